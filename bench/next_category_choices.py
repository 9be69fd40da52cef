"""Choose next-category settings on validation as-of dates only (never the bench's test cutoffs).

    python bench/next_category_choices.py --config training/configs/ta_feng.yaml \
        --as-of 2000-12-28 2001-01-04 --try top_categories=20 top_categories=40 ...

Each candidate (one `setting=value` over the config's tasks.next-category, YAML-parsed values; `-` = the config
as is) is trained as of each date through the library (no registration, a temporary MLflow store) and printed
with the model's and every baseline's next-basket and cross-sell hit rate at 3, the buyer coverage of the
targets, the timing model's MAE and the next-basket hit rate at 3 at each repeat-rate blend weight (REPEAT_WEIGHTS,
on top of the configured co-purchase blend). For Ta-Feng the dates' test windows end by 2001-01-04, the first test
cutoff of bench/quality.py's next-category-tafeng section.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--as-of", nargs="+", required=True)
    ap.add_argument("--try", dest="candidates", nargs="+", default=["-"], metavar="SETTING=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="crmscore-choices-"))
    os.environ["CRMSCORE_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["CRMSCORE_ARTIFACT_LOCATION"] = str(tmp / "mlruns")
    os.chdir(REPO)
    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task

    cfg = load_config(args.config)
    cfg.validation.quarantine_dir = str(tmp / "quarantine")
    data = load_customer_data(cfg)
    task = get_task("next-category")
    for cand in args.candidates:
        override = {} if cand == "-" else {cand.split("=", 1)[0]: yaml.safe_load(cand.split("=", 1)[1])}
        for as_of in args.as_of:
            t = time.perf_counter()
            s = task.settings(cfg.tasks.get("next-category"), **override)
            r = train_task(task, cfg, s, as_of=as_of, data=data, register=False)
            m = r.metrics
            refs = "  ".join(f"{n} {b.get('hit_rate_at_3', float('nan')):.4f}/{b.get('xsell_hit_rate_at_3', float('nan')):.4f}"
                             for n, b in r.baselines.items())
            repeats = ", ".join(f"{k.split('_')[1]}: {v:.4f}" for k, v in m.items()
                                if k.startswith("repeat_") and k.endswith("_hit_rate_at_3"))
            print(f"{cand:28s} as of {as_of} test {str(r.dataset.cutoffs['test'])[:10]}: model "
                  f"{m['hit_rate_at_3']:.4f}/{m['xsell_hit_rate_at_3']:.4f} (next basket/cross-sell hit@3; "
                  f"{int(m['rows'])}/{int(m['xsell_rows'])} buyers, coverage {m.get('buyer_coverage', float('nan')):.3f}"
                  f", timing MAE {m.get('days_to_category_mae', float('nan')):.2f} vs "
                  f"{m.get('days_to_category_mae_baseline', float('nan')):.2f}; next basket with the repeat-rate "
                  f"blend {repeats})  {refs}  "
                  f"[{time.perf_counter() - t:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
