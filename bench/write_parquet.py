"""Benchmark: the feature build's last step alone, writing the feature table to Parquet.

    python bench/write_parquet.py FEATURES.parquet [--repeat 5] [--out DIR]

FEATURES.parquet is a feature table already built, e.g. the one `python bench/features.py --keep DIR` leaves in
DIR/out/features.parquet (1M customers x 59 columns). It is read once; then, alternately and --repeat times
each, the frame is written by crmscore.files.write_table_parquet and by pandas' own writer
(`frame.to_parquet(index=False)`, the reference whose read-back the project's writer must equal). Printed for
each: wall and CPU seconds (min and median), the file's size, the time pandas takes to read it back (the best
of three), and whether it reads back equal to the frame pandas' writer gives. The load average is printed:
other work on the machine inflates wall times, so judge by CPU seconds as well. The last line gives the ratio of
the best times, the project's writer against pandas' (measured in the same run).

No timing goal: exit status 1 when the project's file does not read back equal to pandas', 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("features", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="Folder for the written files (default: a temporary one).")
    args = ap.parse_args(argv)

    import pandas as pd

    from crmscore.files import write_table_parquet

    frame = pd.read_parquet(args.features)
    out = args.out or Path(tempfile.mkdtemp(prefix="crmscore-bench-write-"))
    out.mkdir(parents=True, exist_ok=True)
    writers = {"write_table_parquet": lambda p: write_table_parquet(frame, p),
               "pandas to_parquet": lambda p: frame.to_parquet(p, index=False)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in writers}
    for _ in range(args.repeat):
        for name, write in writers.items():
            path = out / f"{name.split()[0]}.parquet"
            times[name].append(_timed(lambda: write(path)))

    print(f"{len(frame):,} rows x {frame.shape[1]} columns from {args.features}; {args.repeat} writes each")
    reference = pd.read_parquet(out / "pandas.parquet")
    ok = True
    for name, runs in times.items():
        path = out / f"{name.split()[0]}.parquet"
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        read_wall, read_cpu = min(_timed(lambda: pd.read_parquet(path)) for _ in range(3))
        same = pd.read_parquet(path).equals(reference) if name != "pandas to_parquet" else True
        ok = ok and same
        print(f"  {name:<22} wall min {min(walls):.2f} s, median {statistics.median(walls):.2f} s; "
              f"CPU min {min(cpus):.2f} s, median {statistics.median(cpus):.2f} s; "
              f"{path.stat().st_size / 1e6:.1f} MB; read back in {read_wall:.2f} s ({read_cpu:.2f} CPU s)"
              + ("" if same else "; READS BACK DIFFERENT"))
    print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    ours, theirs = times["write_table_parquet"], times["pandas to_parquet"]
    wall = min(w for w, _ in ours) / min(w for w, _ in theirs)
    cpu = min(c for _, c in ours) / min(c for _, c in theirs)
    print(f"write_table_parquet / pandas to_parquet, best of each: {wall:.2f}x wall, {cpu:.2f}x CPU")
    if args.out is None:
        for p in out.glob("*.parquet"):
            p.unlink()
        out.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
