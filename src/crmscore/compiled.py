"""Compiled numeric loops: numba's njit (no GIL, the machine code cached beside the module where that folder is
writable), or None where numba cannot run here.

Why one place: the TreeSHAP tables (crmscore.models.treeshap) and the reasons' top-k (crmscore.models.space) each
compile a loop, and both must keep working, more slowly, on a machine where numba does not import (a numpy it does
not support, a platform without wheels): their callers then use LightGBM's pred_contrib and numpy's stable sort.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_kernels: dict[Callable[..., Any], Any] = {}


def compiled(fn: Callable[..., Any]) -> Any:
    """fn compiled by numba (once per process), or None when numba is unavailable (said once in the log)."""
    if fn not in _kernels:
        try:
            import numba
        except Exception as e:  # noqa: BLE001 - any import failure means: no compiled loops here
            log.warning("numba is unavailable (%s: %s): %s runs on its slower fallback", type(e).__name__, e,
                        fn.__name__)
            _kernels[fn] = None
        else:
            try:
                _kernels[fn] = numba.njit(nogil=True, cache=True)(fn)
            except RuntimeError:  # nowhere writable to cache it: compiled in each process (a few seconds)
                _kernels[fn] = numba.njit(nogil=True)(fn)
    return _kernels[fn]
