"""Runtime settings, from the environment (prefix CRMSCORE_) or a `.env` file. Read in entry points only.

MLflow's own variables, MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI, apply when the CRMSCORE_ ones are unset:
a machine already set up for MLflow needs nothing more, and CRMSCORE_ still wins where both are set."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSCORE_", env_file=".env", extra="ignore", populate_by_name=True)

    log_level: str = Field(default="INFO", description="Logging level for the CLI and the service.")
    home: Path = Field(default=Path(".crmscore"), description="Local state: keys, online store, logs.")
    # (an alias replaces the prefix, so both names are spelled out; the first one set wins)
    tracking_uri: str = Field(default="sqlite:///mlflow.db", description="MLflow tracking URI.",
                              validation_alias=AliasChoices("CRMSCORE_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    registry_uri: str | None = Field(default=None, description="MLflow registry URI (default: tracking).",
                                     validation_alias=AliasChoices("CRMSCORE_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    artifact_location: str = Field(default="mlruns", description="Artifact root for new experiments.")
    # serving
    serve_models: str | None = Field(
        default=None, description="Models to serve, 'churn@champion,next-purchase@3'; default: every model "
                                  "with the serve alias.")
    serve_alias: str = Field(default="champion", description="Alias served when serve_models is not set.")
    api_keys: str | None = Field(default=None, description="Comma-separated API keys (for containers).")
    redis_url: str | None = Field(default=None, description="Online store in Redis (a fleet) instead of SQLite.")
    config: Path | None = Field(default=None, description="Project config (lifecycle thresholds for segments).")
    max_batch: int = Field(default=1000, description="Most customers in one scoring request (413 above).")
    max_body_bytes: int = Field(default=2_000_000, description="Largest request body accepted (413 above).")
    workers: int = Field(default=1, description="Service worker processes.")
    prediction_log_max_bytes: int = Field(
        default=256_000_000, description="The prediction log's active file is rotated into an archive past this "
                                         "size (and at each UTC day's end).")
    prediction_log_retention_days: float = Field(
        default=90, description="Archives of the prediction log older than this are deleted.")
    registry_timeout_seconds: float = Field(
        default=5, description="Timeout of one MLflow registry call at service start-up and reload "
                               "(MLFLOW_HTTP_REQUEST_TIMEOUT, when that is not set).")
    registry_retries: int = Field(default=1, description="Retries of a failed MLflow registry call "
                                                         "(MLFLOW_HTTP_REQUEST_MAX_RETRIES, when that is not set).")
    trace_requests: bool = Field(
        default=False, description="OpenTelemetry spans for /v1, /ui and /health requests. Off by default: a span "
                                   "costs about 0.3 ms of CPU a request; turn it on with an exporter set in "
                                   "BentoML's tracing configuration.")


def get_settings() -> Settings:
    """The settings; a value that does not parse is a ConfigError naming the variable."""
    from pydantic import ValidationError

    from crmscore.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"CRMSCORE_{'_'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid setting {problems}; fix the environment variable or .env") from exc
