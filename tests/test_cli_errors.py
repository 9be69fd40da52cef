"""A problem with the user's data, config or paths ends every command in one line, `error: ...`, naming the
table and column (or the file) and what to do, with exit code 2; tracebacks are for bugs only. Each case runs
the real command line in a subprocess on a broken input built here."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import tracking_store, write_config, write_frames


def _tx(n: int = 300) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"c{i % 30}" for i in range(n)],
                         "ts": pd.date_range("2023-01-01", periods=n, freq="1D").strftime("%Y-%m-%d %H:%M:%S"),
                         "amount": [1.0 + i % 9 for i in range(n)]})


def _run(tmp_path, *args, **env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRMSCORE_TRACKING_URI": tracking_store(tmp_path),
           "CRMSCORE_ARTIFACT_LOCATION": str(tmp_path / "mlruns"), **env_overrides}
    return subprocess.run([sys.executable, "-m", "crmscore", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]  # the last line, and only one
    return errors[0]


def _transactions_config(tmp_path, tx: pd.DataFrame, fmt: str = "csv") -> str:
    return str(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx}, fmt)))


CASES = {
    # name: (build the input -> command args, words the one line must hold)
    "wrong types": (lambda p: ["train", "churn", "-c", _transactions_config(p, _tx().assign(amount="abc"))],
                    ["transactions.amount:", "are not numbers", "quarantined to", "max_bad_share"]),
    "all ids missing": (lambda p: ["features", "build", "-c", _transactions_config(p, _tx().assign(customer_id=None)),
                                   "--as-of", "2023-06-01", "-o", str(p / "f.parquet")],
                        ["transactions.customer_id:", "are missing (null)"]),
    "empty file": (lambda p: ["train", "churn", "-c", _transactions_config(p, _tx().head(0))],
                   ["transactions:", "has no rows", "data.transactions.path"]),
    "missing column": (lambda p: ["segment", "-c", _transactions_config(p, _tx().drop(columns=["amount"])),
                                  "--as-of", "2023-06-01"],
                       ["transactions: required column 'amount' is missing", "data.transactions.columns"]),
    "config with a bad path": (lambda p: ["data", "validate", "-c", str(write_config(
        p, {"transactions": {"path": str(p / "absent.csv")}}))], ["transactions: cannot read", "absent.csv"]),
    "config not YAML": (lambda p: ["train", "churn", "-c", str((p / "c.yaml").write_text("data: [") and p / "c.yaml")],
                        ["is not valid YAML at line 1", "fix the file"]),
    "unknown attribute": (lambda p: ["data", "validate", "-c", str(write_config(p, {
        **write_frames(p, {"transactions": _tx()}),
        "customers": {**write_frames(p, {"customers": pd.DataFrame({"customer_id": ["c1"], "tier": ["gold"]})})[
            "customers"], "attributes": ["tire"]}}))],
        ["customers.tire: listed under data.customers.attributes", "attribute columns: tier"]),
    "feature table without its id column": (lambda p: ["train", "churn", "-c", str(write_config(p, {"features": {
        "path": str(write_frames(p, {"t": pd.DataFrame({"cid": ["a", "b"], "x": [1, 2], "y": [0, 1]})})["t"]["path"]),
        "id": "customerID", "label": "y"}}))], ["features.customerID: the id column", "columns: cid, x, y"]),
    "no model in the registry": (lambda p: ["models", "churn"],
                                 ["no registered model 'churn'", "crmscore train churn"]),
    "output folder that cannot exist": (lambda p: ["features", "build", "-c", _transactions_config(p, _tx()),
                                                   "--as-of", "2023-06-01", "-o", "/proc/no-such-folder/f.parquet"],
                                        ["/proc/no-such-folder", "check the path"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_data_problems_end_in_one_line_and_exit_2(tmp_path, case):
    build, words = CASES[case]
    line = _one_error_line(_run(tmp_path, *build(tmp_path)))
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("CRMSCORE_WORKERS", "two", ["invalid setting CRMSCORE_WORKERS='two'", "valid integer"]),
    ("CRMSCORE_TRACKING_URI", "sqlite:////no-such-folder/mlflow.db", ["the folder /no-such-folder does not exist"]),
])
def test_bad_settings_end_in_one_line_and_exit_2(tmp_path, variable, value, words):
    line = _one_error_line(_run(tmp_path, "models", "churn", **{variable: value}))
    for word in words:
        assert word in line, line
