"""The README's Spark recipe, checked: the DuckDB and Spark outputs of one run are the same tables.

    python bench/spark_parity.py out        # after the recipe wrote out/{features,scores}_{duckdb,spark}.parquet

Features: same customer ids, columns and nulls, numbers within 1e-9 (relative), strings equal. Scores: same
customers, scores and base values within 1e-12, equal deciles, segments, lifecycle stages, model versions and
reason columns, and for every customer the same reasons (features, contributions within 1e-12, texts).
Prints what it compared and exits 1 at the first difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def same_table(a: pd.DataFrame, b: pd.DataFrame, what: str, rtol: float, skip: tuple[str, ...] = ()) -> list[str]:
    problems = []
    if sorted(a.columns) != sorted(b.columns):
        return [f"{what}: columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    a, b = (f.sort_values("customer_id", ignore_index=True) for f in (a, b))
    if a["customer_id"].astype(str).tolist() != b["customer_id"].astype(str).tolist():
        return [f"{what}: customer ids differ ({len(a)} vs {len(b)} rows)"]
    for col in a.columns:
        if col in skip:
            continue
        x, y = a[col], b[col]
        if not (x.isna().to_numpy() == y.isna().to_numpy()).all():
            problems.append(f"{what}.{col}: nulls differ")
        elif x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            u, v = x.to_numpy(float), y.to_numpy(float)
            if not np.isclose(u, v, rtol=rtol, atol=rtol, equal_nan=True).all():
                problems.append(f"{what}.{col}: max difference {np.nanmax(np.abs(u - v)):.3g}")
        elif x.dropna().astype(str).tolist() != y.dropna().astype(str).tolist():
            problems.append(f"{what}.{col}: values differ")
    return problems


def same_reasons(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    a, b = (f.sort_values("customer_id", ignore_index=True) for f in (a, b))
    for cid, mine, theirs in zip(a["customer_id"], a["reasons"], b["reasons"], strict=True):
        if [r["feature"] for r in mine] != [r["feature"] for r in theirs] or \
                [r["text"] for r in mine] != [r["text"] for r in theirs] or \
                not np.allclose([r["contribution"] for r in mine], [r["contribution"] for r in theirs], rtol=0,
                                atol=1e-12):
            return [f"scores.reasons differ for customer {cid}"]
    return []


def main(out: Path) -> int:
    fd, fs = pd.read_parquet(out / "features_duckdb.parquet"), pd.read_parquet(out / "features_spark.parquet")
    sd, ss = pd.read_parquet(out / "scores_duckdb.parquet"), pd.read_parquet(out / "scores_spark.parquet")
    # the DuckDB score file carries as_of and model for monitoring; the Spark folder does not
    sd = sd.drop(columns=[c for c in ("as_of", "model") if c not in ss.columns])
    problems = same_table(fd, fs, "features", 1e-9)
    problems += same_table(sd, ss, "scores", 1e-12, skip=("reasons",)) or same_reasons(sd, ss)
    print(f"features: {len(fd):,} customers x {fd.shape[1] - 1} columns; scores: {len(sd):,} customers, "
          f"{sum(len(r) for r in sd['reasons']):,} reasons")
    for p in problems:
        print("DIFFERS:", p)
    print("equal" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out")))
