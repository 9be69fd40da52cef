"""The project config: where the data is, how its columns map to the canonical tables, and settings
for features, segments and tasks. Loaded from YAML; unknown keys are errors so typos do not pass
silently.

Relative paths in the config resolve against the current working directory first (configs are run
from the repo root), then against the config file's folder.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crmscore.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """One source file (or glob) and how its columns map to a canonical table."""

    path: str = Field(description="CSV or Parquet file, or a glob of them.")
    format: Literal["csv", "parquet", "delta", "table"] | None = Field(
        default=None, description="File format; inferred from the extension when omitted. 'delta' (a Delta "
                                  "table's folder) and 'table' (path names a table in the catalog) need engine: spark."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical name -> source column name or SQL expression over source columns.",
    )
    timestamp_format: str | None = Field(
        default=None, description="strptime format for text timestamps, e.g. '%d/%m/%Y %H:%M'."
    )
    csv_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra options for DuckDB's read_csv (delim, header...)."
    )


class CustomersSourceConfig(SourceConfig):
    """The customers table. Its columns beyond the contract become features only when listed: a column
    exported today (a status, a tier, a closing date, a lifetime value) would otherwise put today's value,
    and so the label, into every historical snapshot."""

    attributes: list[str] | Literal["all"] = Field(default_factory=list, description=(
        "Static columns used as features (attr_<name>), or 'all' for every column not under "
        "exclude_attributes (each is named in a warning)."))
    exclude_attributes: list[str] = Field(default_factory=list, description="With attributes: all, the "
                                          "columns left out.")


class AttributeHistoryConfig(SourceConfig):
    """Slowly changing customer attributes: one row per customer and change, valid from `valid_from`. At a
    cutoff each customer's attribute is the row with the latest valid_from strictly before it."""

    attributes: list[str] = Field(min_length=1, description="Columns used as features (attr_<name>).")


class FeatureTableConfig(_Strict):
    """A ready feature table with one row per customer (subscription or bank data)."""

    path: str
    id: str = Field(description="Column with the customer id.")
    label: str | None = Field(default=None, description="Column with the label, when training.")
    positive: Any = Field(default=1, description="Label value that counts as positive.")
    format: Literal["csv", "parquet"] | None = None
    exclude: list[str] = Field(default_factory=list, description="Columns never used as features.")
    treatment: str | None = Field(default=None, description=(
        "Uplift on a ready experiment table: the column that says treated or control (the label column is then "
        "the outcome); never a feature."))
    treated_value: Any = Field(default=1, description="Value of the treatment column that means treated.")
    keep: list[str] = Field(default_factory=list, description=(
        "Columns used as features although they look like identifiers (a row number, a whole number different "
        "on every row) or free text (fewer than 5 rows a distinct value), which are otherwise left out."))


class DataConfig(_Strict):
    transactions: SourceConfig | None = None
    products: SourceConfig | None = None
    customers: CustomersSourceConfig | None = None
    attribute_history: AttributeHistoryConfig | None = None
    events: SourceConfig | None = None
    treatments: SourceConfig | None = Field(default=None, description=(
        "Campaign experiments (customer, campaign, treated 1/0, time), for uplift models and campaign effects."))
    features: FeatureTableConfig | None = None


class LeakageConfig(_Strict):
    """The leakage alarm at training: a single feature that alone nearly predicts the label on the
    validation rows is almost always recorded after the cutoff (or a copy of the label)."""

    refuse_above: float = Field(default=0.98, gt=0.5, le=1, description=(
        "Refuse training when one feature's own validation ROC-AUC (max(auc, 1 - auc)) is above this."))
    warn_above: float = Field(default=0.90, gt=0.5, le=1, description="Warn above this.")
    allow: list[str] = Field(default_factory=list, description="Features the alarm never refuses (by name).")


class MonitoringConfig(_Strict):
    """Drift and realised-performance thresholds (crmscore.monitoring). PSI defaults are the usual practice
    in credit scoring and CRM: under 0.1 no real shift, 0.1-0.25 a shift worth watching, above 0.25 act."""

    psi_watch: float = Field(default=0.1, gt=0, description="PSI at or above this: watch.")
    psi_act: float = Field(default=0.25, gt=0, description="PSI at or above this: act (retrain).")
    missing_shift: float = Field(default=0.05, ge=0, le=1, description=(
        "An absolute change of a feature's missing rate at least this large: watch."))
    p_value: float = Field(default=0.01, gt=0, lt=1, description=(
        "KS / chi-square p-value below which a test calls a shift significant (reported beside PSI; with "
        "thousands of customers a negligible shift is significant, so PSI decides the status)."))
    performance_drop: float = Field(default=0.05, ge=0, description=(
        "Realised primary metric this far below the figure the model was promoted on: act."))
    bootstrap: int = Field(default=500, ge=50, description="Paired bootstrap resamples when retraining.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description=(
        "A challenger is promoted only when the lower end of this interval of (challenger - champion) is above 0."))


class ValidationConfig(_Strict):
    max_bad_share: float = Field(
        default=0.01, ge=0, le=1, description="Share of bad rows in a table above which loading fails."
    )
    quarantine_dir: str = Field(
        default="quarantine", description="Where rows that fail validation are written, with reasons."
    )


class FeaturesConfig(_Strict):
    windows: list[int] = Field(default=[30, 90, 180, 365], description="Window lengths in days.")
    categories: list[str] | None = Field(
        default=None, description="Categories that get a spend-share feature; default: the largest."
    )
    top_categories: int = Field(default=10, ge=0, description="How many categories when not listed.")
    top_channels: int = Field(default=5, ge=0)
    top_event_types: int = Field(default=5, ge=0)
    evening_hour: int = Field(default=17, ge=0, le=23, description="Orders from this hour count as evening.")
    btyd_horizons: list[int] = Field(
        default=[30, 90], description="Horizons (days) of the buy-till-you-die expected-order features (BG/NBD "
                                      "fitted per snapshot, with P(alive) and Gamma-Gamma order value); [] for none.")

    @field_validator("windows")
    @classmethod
    def _windows_positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return sorted(set(v))

    @field_validator("btyd_horizons")
    @classmethod
    def _horizons_positive(cls, v: list[int]) -> list[int]:
        if any(h <= 0 for h in v):
            raise ValueError("btyd_horizons must be positive day counts, e.g. [30, 90], or [] for none")
        return sorted(set(v))


class LifecycleConfig(_Strict):
    """Lifecycle thresholds in days (see crmscore.features.segments)."""

    new_days: int = Field(default=30, description="First purchase within this many days: 'new'.")
    lapsed_days: list[int] = Field(
        default=[15, 30, 60], description="No purchase for this many days: lapsed_15 / lapsed_30 / lapsed_60."
    )
    churned_days: int = Field(default=180, description="No purchase for this many days: 'churned'.")
    at_risk_gap_ratio: float = Field(
        default=2.0, description="Days since last purchase over the usual gap at or above this: 'at_risk'."
    )

    @field_validator("lapsed_days")
    @classmethod
    def _three_sorted(cls, v: list[int]) -> list[int]:
        if len(v) != 3 or sorted(v) != v:
            raise ValueError("lapsed_days must be three increasing day counts, e.g. [15, 30, 60]")
        return v


class SegmentsConfig(_Strict):
    rfm_window_days: int = Field(default=365, description="Window for RFM frequency and monetary.")
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)


class SparkConfig(_Strict):
    """Where Spark runs when engine is spark (crmscore.data.spark)."""

    master: str = Field(default="local[2]", description=(
        "Spark master URL (local[2], spark://host:7077, yarn, k8s://...) or a Spark Connect address (sc://host:15002)."))
    conf: dict[str, str] = Field(default_factory=dict, description=(
        "Extra Spark settings, e.g. {spark.executor.memory: 8g}; the session time zone is always UTC."))


class DuckDBConfig(_Strict):
    """How the embedded DuckDB may use this machine (engine duckdb)."""

    memory_limit: str | None = Field(default=None, description=(
        "DuckDB's memory_limit, e.g. 1.5GB: past it DuckDB spills the loaded tables and the feature query's "
        "intermediates to a temporary folder instead of growing (slower, bounded). Default: DuckDB's own, 80% of "
        "the machine's memory. A million customers' features peak at about 3 GB without it, 2.2 GB at 1.5GB."))


class ProjectConfig(_Strict):
    name: str = "crmscore"
    engine: Literal["duckdb", "spark"] = Field(default="duckdb", description=(
        "Where canonical tables and features are computed: the embedded DuckDB, or Spark (see spark)."))
    spark: SparkConfig = Field(default_factory=SparkConfig)
    duckdb: DuckDBConfig = Field(default_factory=DuckDBConfig)
    timezone: str = Field(
        default="UTC",
        description="All timestamps are converted to this zone's local wall time; as_of dates are midnight here.",
    )
    data: DataConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    tasks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-task settings (churn, next-purchase, lookalike)."
    )
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    def resolve(self, path: str) -> str:
        """Resolve a configured path: as written from the working directory, else next to the config."""
        p = Path(path).expanduser()
        if p.is_absolute() or _exists(p):
            return str(p)
        alt = self.base_dir / p
        return str(alt) if _exists(alt) else str(p)


def _exists(p: Path) -> bool:
    return bool(glob.glob(str(p))) if glob.has_magic(str(p)) else p.exists()


def load_config(path: str | Path) -> ProjectConfig:
    """Read and check a YAML config. Raises ConfigError with the offending key on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config {path} is not valid YAML{where}: {problem}; fix the file") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping with a 'data' section")
    try:
        cfg = ProjectConfig.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"config {path} is invalid: {problems}") from exc
    if cfg.data.transactions is None and cfg.data.features is None:
        raise ConfigError(
            f"config {path}: data needs 'transactions' (raw purchases) or 'features' (a ready feature table)"
        )
    return cfg
