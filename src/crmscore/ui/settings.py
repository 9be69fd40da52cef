"""Settings of the operations page, from the environment (prefix CRMSCORE_, or a `.env` file), like
crmscore.settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSCORE_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".crmscore"), description="Local state (keys, the page's session secret).")
    api_keys: str | None = Field(default=None, description="Comma-separated API keys (as for the API).")
    actions: Path | None = Field(default=None, description="Suggested-action rules (YAML) instead of the shipped ones.")
    ui_secret: str | None = Field(default=None, description="Secret that signs session cookies; default: a random one "
                                                            "kept in CRMSCORE_HOME/ui_secret (set it for several "
                                                            "replicas behind one address).")
    ui_session_hours: float = Field(default=12.0, gt=0, description="A sign-in lasts this long (or until the browser "
                                                                      "is closed).")
