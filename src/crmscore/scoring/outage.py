"""The state of one dependency of the service (the online store): up, or down since when, and the log lines
an outage is worth. One line when it goes down, at most one a minute while it stays down (with the number
of failed calls), one when it is back, instead of a traceback per request (24.8 MB of log in 21 s before)."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("crmscore.service")


class Outage:
    def __init__(self, name: str, every_seconds: float = 60.0) -> None:
        self.name = name
        self.every = every_seconds
        self.down = False
        self.since = 0.0
        self.reason = ""
        self._failures = 0
        self._logged_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            self.reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            if not self.down:
                self.down, self.since, self._logged_at, self._failures = True, now, now, 0
                log.error("%s unavailable (%s): requests that need it are answered 503 until it is back",
                          self.name, self.reason)
            elif now - self._logged_at >= self.every:
                log.error("%s still unavailable after %.0f s (%d failed calls since the last line): %s",
                          self.name, now - self.since, self._failures, self.reason)
                self._logged_at, self._failures = now, 0

    def ok(self) -> None:
        if not self.down:  # the common case: no lock
            return
        with self._lock:
            if self.down:
                log.warning("%s is back after %.0f s", self.name, time.monotonic() - self.since)
                self.down, self._failures = False, 0

    def describe(self) -> str:
        return f"{self.name} unavailable for {time.monotonic() - self.since:.0f} s ({self.reason})"
