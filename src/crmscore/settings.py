"""Runtime settings, from the environment (prefix CRMSCORE_) or a `.env` file. Read in entry points only."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSCORE_", env_file=".env", extra="ignore")

    log_level: str = Field(default="INFO", description="Logging level for the CLI and the service.")
    home: Path = Field(default=Path(".crmscore"), description="Local state: keys, online store, logs.")
    tracking_uri: str = Field(default="sqlite:///mlflow.db", description="MLflow tracking URI.")
    registry_uri: str | None = Field(default=None, description="MLflow registry URI (default: tracking).")
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
    return Settings()
