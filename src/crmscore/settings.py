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


def get_settings() -> Settings:
    return Settings()
