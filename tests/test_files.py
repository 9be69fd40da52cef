"""crmscore.files: the Parquet writer of wide tables reads back exactly what pandas' own writer gives."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crmscore.files import write_table_parquet


def test_feature_table_parquet_reads_back_as_pandas_writes_it(tmp_path):
    rng = np.random.default_rng(7)
    n = 2_000
    frame = pd.DataFrame({
        "customer_id": pd.array([f"c{i}" for i in range(n)], dtype="string"),
        "recency_days": rng.exponential(40.0, n),
        "orders": rng.integers(0, 9, n),
        "signup_days": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 900, n)),
        "rfm_segment": pd.array(rng.choice(["champions", "at risk", None], n), dtype="string"),
    })
    write_table_parquet(frame, tmp_path / "new.parquet")
    frame.to_parquet(tmp_path / "pandas.parquet", index=False)

    ours, theirs = pd.read_parquet(tmp_path / "new.parquet"), pd.read_parquet(tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert pq.read_schema(tmp_path / "new.parquet").equals(pq.read_schema(tmp_path / "pandas.parquet"),
                                                           check_metadata=True)
    # the point of it: floats written plainly, the other columns still dictionary-encoded
    chunks = {c.path_in_schema: c.encodings for c in
              (pq.ParquetFile(tmp_path / "new.parquet").metadata.row_group(0).column(i) for i in range(5))}
    assert not any("DICTIONARY" in e or "RLE_DICTIONARY" in e for e in chunks["recency_days"])
    assert "RLE_DICTIONARY" in chunks["orders"] and "RLE_DICTIONARY" in chunks["rfm_segment"]
