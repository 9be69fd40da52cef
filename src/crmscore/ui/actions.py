"""Suggested actions from configurable rules (the format is documented at the top of actions.yaml, shipped
in this package; CRMSCORE_ACTIONS points at another file). A rule suggests an action when all its
conditions hold for a customer: lifecycle stage, RFM segment, a model's band, score, decile or top
category, or a feature's value."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crmscore.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Text(_Strict):
    en: str
    zh: str | None = None

    def get(self, lang: str) -> str:
        return getattr(self, lang, None) or self.en


class ScoreCondition(_Strict):
    band: list[str] | None = None
    min: float | None = None
    max: float | None = None
    max_decile: int | None = Field(default=None, ge=1, le=10)
    top_category: list[str] | None = None

    @field_validator("band", "top_category", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class FeatureCondition(_Strict):
    min: float | None = None
    max: float | None = None
    equals: Any = None


class When(_Strict):
    lifecycle_stage: list[str] | None = None
    rfm_segment: list[str] | None = None
    scores: dict[str, ScoreCondition] = Field(default_factory=dict)
    features: dict[str, FeatureCondition] = Field(default_factory=dict)

    @field_validator("lifecycle_stage", "rfm_segment", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Rule(_Strict):
    id: str
    when: When = Field(default_factory=When)
    action: Text
    why: Text | None = None


class Bands(_Strict):
    high: int = Field(default=2, ge=1, le=10)
    medium: int = Field(default=5, ge=1, le=10)


class RuleBook(_Strict):
    bands: Bands = Field(default_factory=Bands)
    max_actions: int = Field(default=3, ge=1)
    rules: list[Rule] = Field(default_factory=list)
    default: Text | None = None

    def band(self, score: dict[str, Any]) -> str | None:
        """The score's own band (lookalike), else from its decile."""
        if score.get("band"):
            return str(score["band"])
        decile = score.get("decile")
        if not decile:
            return None
        return "high" if decile <= self.bands.high else "medium" if decile <= self.bands.medium else "low"

    def suggest(self, profile: dict[str, Any], scores: list[dict[str, Any]], features: dict[str, Any],
                lang: str = "en") -> list[dict[str, str]]:
        """The actions whose rules hold, in file order: [{id, action, why}]; the default when none holds."""
        by_model = {s["model"]: s for s in scores if s.get("error") is None and s.get("score") is not None}
        out = []
        for rule in self.rules:
            if self._holds(rule.when, profile, by_model, features):
                out.append({"id": rule.id, "action": rule.action.get(lang), "why": rule.why.get(lang) if rule.why else ""})
                if len(out) >= self.max_actions:
                    break
        if not out and self.default is not None:
            out.append({"id": "default", "action": self.default.get(lang), "why": ""})
        return out

    def _holds(self, when: When, profile: dict[str, Any], scores: dict[str, dict[str, Any]],
               features: dict[str, Any]) -> bool:
        if not (_one_of(profile.get("lifecycle_stage"), when.lifecycle_stage)
                and _one_of(profile.get("rfm_segment"), when.rfm_segment)):
            return False
        for model, cond in when.scores.items():
            s = scores.get(model)
            if s is None or not (_one_of(self.band(s), cond.band) and _within(s["score"], cond.min, cond.max)
                                 and _within(s.get("decile"), None, cond.max_decile)
                                 and _one_of(top_category(s), cond.top_category)):
                return False
        return all(features.get(name) is not None and (fc.equals is None or features[name] == fc.equals)
                   and _within(features[name], fc.min, fc.max) for name, fc in when.features.items())


def top_category(score: dict[str, Any]) -> str | None:
    """A next-category score's most likely category (the service puts it in `details`)."""
    return score.get("top_category") or (score.get("details") or {}).get("top_category")


def _one_of(value: Any, allowed: list[str] | None) -> bool:
    return allowed is None or value in allowed


def _within(v: Any, lo: float | None, hi: float | None) -> bool:
    """v lies in [lo, hi] (either bound may be absent); text never lies in a numeric range."""
    if lo is None and hi is None:
        return True
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def parse_rules(text: str, where: str = "actions.yaml") -> RuleBook:
    try:
        raw = yaml.safe_load(text) or {}
        return RuleBook.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems} (the format is described at the top of the shipped actions.yaml)") from exc


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> RuleBook:
    """The rules of `path`, or the shipped actions.yaml."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"CRMSCORE_ACTIONS={path}: no such file")
        return parse_rules(p.read_text(encoding="utf-8"), str(p))
    return parse_rules(resources.files(__package__).joinpath("actions.yaml").read_text(encoding="utf-8"))
