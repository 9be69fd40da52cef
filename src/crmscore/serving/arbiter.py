"""`bentoml serve` for one service instance, with the instance's own Prometheus directory.

BentoML keeps its multiprocess metrics in BENTOML_HOME/prometheus_multiproc_dir and empties it at start, so two
services on one host shared it: starting the second wiped the first's counters, and the first then reported
the second's traffic. `crmscore serve` runs this module instead of `python -m bentoml`: it points BentoML at
CRMSCORE_METRICS_DIR (set by `crmscore serve` to CRMSCORE_HOME/metrics/port-<port>) before BentoML's CLI runs.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    metrics_dir = os.environ.get("CRMSCORE_METRICS_DIR")
    if metrics_dir:
        os.makedirs(metrics_dir, mode=0o700, exist_ok=True)
        BentoMLContainer.prometheus_multiproc_dir.set(os.path.abspath(metrics_dir))
    from bentoml_cli.cli import cli

    cli(argv, prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
