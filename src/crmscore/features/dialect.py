"""The SQL that differs between engines, in one place: DuckDB (embedded, the default) and Spark SQL.

The feature declarations (crmscore.features.definitions) are written in the part of SQL both engines read
the same way; everything else goes through a `Dialect`. Each trap below was measured, and a generic
transpiler (sqlglot, DuckDB to Spark) got 12 of 51 feature columns wrong, so the differences are spelled
out here rather than translated:

- `epoch()` does not exist on Spark: day differences are microsecond differences over 86,400e6.
- `dayofweek` is 0 = Sunday on DuckDB and 1 = Sunday on Spark: a shared `IN (0, 6)` counts Fridays.
- A double-quoted identifier is a string literal on Spark (every row gets the column's name): identifiers
  are quoted by the dialect (backticks on Spark).
- A decimal literal (`1.0`) is a DECIMAL on Spark and `AVG` of it is rounded to 5 places: declarations use
  integers (`AVG` of integers is DOUBLE on both).
- `TIMESTAMP '...'` is read in the session time zone on Spark: cutoffs are `TIMESTAMP_NTZ` there (timestamps
  are naive local times in the config's time zone on both engines).
- ANSI Spark raises on division by zero where DuckDB returns inf: every `/` divides by `NULLIF(..., 0)`.
- A final global `ORDER BY` is one costly sort at scale: Spark leaves rows unordered.

`lint_declaration` rejects the constructs that differ, so a new declaration cannot bring one back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Dialect:
    """The engine-specific SQL pieces; everything else in the feature SQL is portable."""

    name: str = "duckdb"

    def age_days(self, ts: str, as_of: str) -> str:
        """Days (fractional) from `ts` to `as_of`, both naive local timestamps."""
        return f"(epoch({as_of}) - epoch({ts})) / 86400.0"

    def timestamp(self, value: pd.Timestamp) -> str:
        """A naive local timestamp literal (never shifted by a session time zone)."""
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"

    def is_weekend(self, ts: str) -> str:
        """True on Saturday and Sunday."""
        return f"(dayofweek({ts}) IN (0, 6))"

    def hour(self, ts: str) -> str:
        return f"hour({ts})"

    def quote(self, identifier: str) -> str:
        """An identifier that may hold spaces, capitals or quotes (customer attribute columns)."""
        return '"' + identifier.replace('"', '""') + '"'

    def order_by(self, columns: str) -> str:
        """The final ordering of a result (empty where a global sort costs more than it gives)."""
        return f" ORDER BY {columns}"


@dataclass(frozen=True)
class SparkDialect(Dialect):
    name: str = "spark"

    def age_days(self, ts: str, as_of: str) -> str:
        # exact integer microseconds, then one division: within 1e-12 days of DuckDB's epoch() doubles
        return f"(timestampdiff(MICROSECOND, {ts}, {as_of}) / CAST(86400000000 AS DOUBLE))"

    def timestamp(self, value: pd.Timestamp) -> str:
        return f"TIMESTAMP_NTZ '{value.isoformat(sep=' ')}'"

    def is_weekend(self, ts: str) -> str:
        return f"(dayofweek({ts}) IN (1, 7))"

    def quote(self, identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"

    def order_by(self, columns: str) -> str:
        return ""


DUCKDB = Dialect()
SPARK = SparkDialect()
DIALECTS = {"duckdb": DUCKDB, "spark": SPARK}

_STRING = re.compile(r"'(?:[^']|'')*'")
_UNGUARDED_DIVISION = re.compile(r"/(?!\s*NULLIF\s*\()", re.I)
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d*(?![\w.])|(?<![\w.])\.\d+")
_ENGINE_ONLY = re.compile(r"\b(epoch|dayofweek|strftime|date_format|timestampdiff|unix_\w+)\s*\(|\bTIMESTAMP(_NTZ)?\s*'"
                          r"|\bORDER\s+BY\b|::", re.I)


def lint_declaration(sql: str) -> list[str]:
    """The constructs in a declaration's SQL that two engines read differently, as messages (none: portable).

    String literals are skipped (a category may be called 'Fruit "fresh" 1.5 kg / day')."""
    code = _STRING.sub("''", sql)
    problems = []
    if _UNGUARDED_DIVISION.search(code):
        problems.append("a '/' not followed by NULLIF(...): ANSI Spark raises on division by zero, DuckDB gives inf; "
                        "write a / NULLIF(b, 0)")
    if '"' in code or "`" in code:
        problems.append("a quoted identifier: a double-quoted name is a string literal on Spark; name the column "
                        "bare (the build quotes attribute columns through the dialect)")
    if _DECIMAL.search(code):
        problems.append("a decimal literal: it is a DECIMAL on Spark (AVG rounds it to 5 places); use integers "
                        "(AVG of integers is DOUBLE on both engines)")
    m = _ENGINE_ONLY.search(code)
    if m:
        problems.append(f"{m.group(0).strip()!r} is engine-specific: add it to crmscore.features.dialect")
    return problems
