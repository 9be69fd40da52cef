"""crmscore.files: the Parquet writer of wide tables reads back exactly what pandas' own writer gives."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crmscore.files import arrow_table, write_table_parquet


def _feature_like_frame(n: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({
        "customer_id": pd.array([f"c{i}" for i in range(n)], dtype="string"),
        "recency_days": rng.exponential(40.0, n),
        "orders": rng.integers(0, 9, n),
        "signup_days": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 900, n)),
        "rfm_segment": pd.array(rng.choice(["champions", "at risk", None], n), dtype="string"),
        "lifecycle_stage": pd.Series(rng.choice(["new", "active"], n), dtype="str"),
        "as_of": pd.Timestamp("2024-06-01"),
        "label": pd.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5), dtype="boolean"),
        "spend_share": pd.array(np.where(rng.random(n) < 0.3, None, rng.random(n)), dtype="Float64"),
        "ratio": np.where(rng.random(n) < 0.1, np.inf, rng.normal(0, 1, n)),
        "channel": pd.Categorical(rng.choice(["store", "app", None], n)),
        "note": pd.Series(rng.choice(["a", None], n), dtype=object),
    })
    # floats as a training set holds them: rows of one consolidated 2-D block, some NaN at the ends
    frame = frame.copy()
    frame.loc[[0, n - 1], "recency_days"] = np.nan
    return frame


def test_feature_table_parquet_reads_back_as_pandas_writes_it(tmp_path):
    frame = _feature_like_frame()
    write_table_parquet(frame, tmp_path / "new.parquet")
    frame.to_parquet(tmp_path / "pandas.parquet", index=False)

    ours, theirs = pd.read_parquet(tmp_path / "new.parquet"), pd.read_parquet(tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert pq.read_schema(tmp_path / "new.parquet").equals(pq.read_schema(tmp_path / "pandas.parquet"),
                                                           check_metadata=True)
    # the point of it: floats written plainly and without statistics, integers delta-encoded, the strings still
    # dictionary-encoded; the columns other than floats keep their min/max
    meta = pq.ParquetFile(tmp_path / "new.parquet").metadata.row_group(0)
    chunks = {c.path_in_schema: c for c in (meta.column(i) for i in range(meta.num_columns))}
    assert not any("DICTIONARY" in e for e in chunks["recency_days"].encodings)
    assert chunks["recency_days"].statistics is None
    assert "DELTA_BINARY_PACKED" in chunks["orders"].encodings
    assert "RLE_DICTIONARY" in chunks["rfm_segment"].encodings
    assert chunks["customer_id"].statistics.min == "c0" and chunks["orders"].statistics.max == frame["orders"].max()


def test_arrow_table_equals_pyarrows_conversion():
    frame = _feature_like_frame(500)
    single_column = frame[["signup_days"]]  # a float column alone in its block
    no_rows = frame.iloc[:0]
    for f in (frame, single_column, no_rows):
        ours, theirs = arrow_table(f), pa.Table.from_pandas(f, preserve_index=False)
        assert ours.equals(theirs, check_metadata=True)
    nulls = arrow_table(frame).column("signup_days")
    assert nulls.null_count == int(frame["signup_days"].isna().sum()) > 0
    assert arrow_table(frame).column("ratio").null_count == 0  # inf is a value, not missing
