"""The data contract: each violation is named (table, column, count, example rows), bad rows are
quarantined with their reason, and too many bad rows fail loading."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.errors import DataContractError

from conftest import cli_here, write_config, write_frames


def _tx(n: int = 200) -> pd.DataFrame:
    return pd.DataFrame({
        "cust": [f"c{i % 20}" for i in range(n)],
        "when": pd.date_range("2024-01-01", periods=n, freq="6h").strftime("%Y-%m-%d %H:%M:%S"),
        "value": [f"{1 + i % 7}.50" for i in range(n)],
    })


def _load(tmp_path, frames, columns=None, **extra):
    data = write_frames(tmp_path, frames)
    data["transactions"]["columns"] = columns or {"customer_id": "cust", "ts": "when", "amount": "value"}
    return load_customer_data(load_config(write_config(tmp_path, data, **extra)), strict=False)


def _quarantine(tmp_path, table="transactions") -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "quarantine" / f"{table}.parquet")


def test_missing_required_column_names_it(tmp_path):
    tx = _tx().drop(columns=["cust"])
    with pytest.raises(DataContractError, match=r"transactions: required column 'customer_id' is missing") as e:
        _load(tmp_path, {"transactions": tx}, columns={"ts": "when", "amount": "value"})
    assert "source columns: when, value" in str(e.value)


def test_mapping_to_absent_source_column_names_it(tmp_path):
    with pytest.raises(DataContractError, match=r"transactions\.amount: .*'valu' is not in the source"):
        _load(tmp_path, {"transactions": _tx()}, columns={"customer_id": "cust", "ts": "when", "amount": "valu"})


def test_non_numeric_amount_is_quarantined_with_reason(tmp_path):
    tx = _tx()
    tx.loc[5, "value"] = "abc"
    data = _load(tmp_path, {"transactions": tx})
    rep = data.reports["transactions"]
    assert rep.rows_bad == 1 and not data.bad_tables  # 0.5% is within the default 1%
    (issue,) = rep.issues
    assert (issue.column, issue.rows) == ("amount", 1)
    assert "transactions.amount: 1 of 200 rows (0.50%) are not numbers; e.g. row 6: 'abc'" in issue.message(200)
    q = _quarantine(tmp_path)
    assert q[["_row", "_column", "_reason", "_value"]].values.tolist() == [[6, "amount", "are not numbers", "abc"]]
    assert q.loc[0, "cust"] == "c5"  # the whole source row is kept
    assert data.con.execute("SELECT count(*) FROM transactions").fetchone()[0] == 199


def test_clean_reload_loads_the_same_rows_and_removes_the_stale_quarantine(tmp_path):
    """Clean data takes the one-pass load (no row numbers, no bad-row lists): the same canonical rows as the
    good rows of a dirty load, in source order, and the quarantine file of an earlier dirty load is removed."""
    tx = _tx()
    tx.loc[5, "value"] = "abc"
    dirty = _load(tmp_path, {"transactions": tx})
    assert (tmp_path / "quarantine" / "transactions.parquet").exists()
    clean = _load(tmp_path, {"transactions": tx.drop(index=5)})
    rep = clean.reports["transactions"]
    assert (rep.rows_read, rep.rows_bad, rep.issues, rep.quarantine_path) == (199, 0, [], None)
    assert not (tmp_path / "quarantine" / "transactions.parquet").exists()
    query = "SELECT * FROM transactions"
    pd.testing.assert_frame_equal(clean.con.execute(query).df(), dirty.con.execute(query).df())


def test_lines_whose_product_is_not_in_the_catalogue_are_counted(tmp_path):
    """A product_id missing from products is noted with its line count (the category becomes 'unknown')."""
    tx = _tx().assign(sku=[f"p{i % 5}" if i % 10 else None for i in range(200)])
    products = pd.DataFrame({"product_id": ["p0", "p1", "p2"], "category": ["a", "b", "c"]})
    cols = {"customer_id": "cust", "ts": "when", "amount": "value", "product_id": "sku"}
    data = _load(tmp_path, {"transactions": tx, "products": products}, columns=cols)
    expected = int(tx["sku"].isin(["p3", "p4"]).sum())
    assert data.reports["transactions"].notes == [f"{expected:,} lines have a product_id not in products "
                                                  f"(category unknown)"]
    unknown = data.con.execute("SELECT count(*) FROM lines WHERE category = 'unknown'").fetchone()[0]
    assert unknown == expected + int(tx["sku"].isna().sum())


def test_unparseable_timestamp_and_null_id(tmp_path):
    tx = _tx()
    tx.loc[3, "when"] = "31/31/2024"
    tx.loc[7, "cust"] = None
    data = _load(tmp_path, {"transactions": tx})
    by_col = {i.column: i for i in data.reports["transactions"].issues}
    assert by_col["ts"].problem == "are not parseable timestamps" and by_col["ts"].examples == [(4, "31/31/2024")]
    assert by_col["customer_id"].problem == "are missing (null)" and by_col["customer_id"].rows == 1
    assert sorted(_quarantine(tmp_path)["_column"]) == ["customer_id", "ts"]


def test_ids_are_trimmed_of_every_space_and_blank_ids_are_missing(tmp_path):
    """Ids lose leading and trailing spaces of every kind DuckDB's TRIM knows (ASCII, no-break, em, ideographic),
    keep inner ones and other characters (tabs, accents), and a blank id is a missing one: the loader takes a
    cheap path for plain ASCII values and TRIM for the rest, and both must give these."""
    raw = ["c1", " c1", "c1  ", "\u00a0c1", "c1\u2003", "\u3000c1\u3000", "c 1", "c\t1", "\tc1", "é1 ", " ", "\u00a0"]
    tx = _tx(len(raw)).assign(cust=raw)
    data = _load(tmp_path, {"transactions": tx}, validation={"max_bad_share": 0.5,
                                                             "quarantine_dir": str(tmp_path / "quarantine")})
    kept = [r[0] for r in data.con.execute("SELECT customer_id FROM transactions").fetchall()]
    assert kept == ["c1"] * 6 + ["c 1", "c\t1", "\tc1", "é1"]
    (issue,) = data.reports["transactions"].issues
    assert (issue.column, issue.problem, issue.rows) == ("customer_id", "are empty", 2)


def test_duplicate_customer_ids_are_quarantined(tmp_path):
    customers = pd.DataFrame({"customer_id": ["c1", "c2", "c2", "c3"], "tier": ["a", "b", "c", "d"]})
    data = _load(tmp_path, {"transactions": _tx(), "customers": customers},
                 validation={"max_bad_share": 0.6, "quarantine_dir": str(tmp_path / "quarantine")})
    (issue,) = data.reports["customers"].issues
    assert (issue.column, issue.problem, issue.rows) == ("customer_id", "are duplicate ids", 2)
    assert set(_quarantine(tmp_path, "customers")["tier"]) == {"b", "c"}
    assert data.con.execute("SELECT list(customer_id ORDER BY 1) FROM customers").fetchone()[0] == ["c1", "c3"]


def test_too_many_bad_rows_fail_after_quarantine(tmp_path):
    tx = _tx()
    tx.loc[0:9, "value"] = "n/a"  # 5% > 1%
    data = write_frames(tmp_path, {"transactions": tx})
    data["transactions"]["columns"] = {"customer_id": "cust", "ts": "when", "amount": "value"}
    cfg = load_config(write_config(tmp_path, data))
    with pytest.raises(DataContractError, match=r"transactions\.amount: 10 of 200 rows \(5\.00%\) are not numbers"):
        load_customer_data(cfg)
    assert len(_quarantine(tmp_path)) == 10  # nothing lost even when loading fails


def test_threshold_is_configurable(tmp_path):
    tx = _tx()
    tx.loc[0:9, "value"] = "n/a"
    data = _load(tmp_path, {"transactions": tx},
                 validation={"max_bad_share": 0.1, "quarantine_dir": str(tmp_path / "quarantine")})
    assert data.reports["transactions"].rows_bad == 10 and not data.bad_tables


def test_sql_expression_mapping_and_timezone_rule(tmp_path):
    tx = pd.DataFrame({"cust": ["a", "a"], "Quantity": [2, 3], "Price": [1.5, 2.0],
                       "when": ["2024-03-01T10:00:00+02:00", "2024-03-01 10:00:00"]})
    data = write_frames(tmp_path, {"transactions": tx})
    data["transactions"]["columns"] = {"customer_id": "cust", "ts": "when", "amount": "Quantity * Price"}
    cfg = load_config(write_config(tmp_path, data, timezone="America/New_York"))
    rows = load_customer_data(cfg).con.execute("SELECT ts, amount FROM transactions ORDER BY amount").fetchall()
    # 10:00 at +02:00 is 03:00 in New York (EST); the naive value is already New York time
    assert [(str(ts), amt) for ts, amt in rows] == [("2024-03-01 03:00:00", 3.0), ("2024-03-01 10:00:00", 6.0)]


def test_cli_validate_exits_nonzero_naming_the_column(tmp_path):
    tx = _tx()
    tx["value"] = ["x"] * 20 + list(tx["value"][20:])
    data = write_frames(tmp_path, {"transactions": tx})
    data["transactions"]["columns"] = {"customer_id": "cust", "ts": "when", "amount": "value"}
    cfg = write_config(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "crmscore", "data", "validate", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "transactions.amount: 20 of 200 rows" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    ok = write_config(tmp_path, write_frames(tmp_path, {"transactions": _tx().rename(
        columns={"cust": "customer_id", "when": "ts", "value": "amount"})}))
    assert "data contract OK" in cli_here("data", "validate", "--config", ok).stdout  # in this process


def test_cli_missing_customer_column_exits_nonzero(tmp_path):
    data = write_frames(tmp_path, {"transactions": _tx().drop(columns=["cust"]).rename(
        columns={"when": "ts", "value": "amount"})})
    proc = subprocess.run([sys.executable, "-m", "crmscore", "data", "validate", "--config",
                           str(write_config(tmp_path, data))], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "required column 'customer_id' is missing" in proc.stderr


def test_duckdb_memory_limit_is_applied_and_a_bad_size_is_named(tmp_path):
    """duckdb.memory_limit bounds the embedded DuckDB (a million customers' features otherwise take about 3 GB)."""
    from crmscore.errors import ConfigError

    data = _load(tmp_path, {"transactions": _tx()}, duckdb={"memory_limit": "300MB"})
    limit = data.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith("MiB") and 280 <= float(limit.split()[0]) <= 300, limit
    assert data.reports["transactions"].rows_read == 200
    with pytest.raises(ConfigError, match=r"duckdb\.memory_limit 'lots' is not a size DuckDB reads"):
        _load(tmp_path, {"transactions": _tx()}, duckdb={"memory_limit": "lots"})
