"""The feature contract between a trained model and the online store.

A model records the definition hash (crmscore.features.definitions.Feature.definition_hash) of every
feature it reads; `crmscore features publish` writes the hash of every feature of the snapshot into the
snapshot's meta. The service serves a model only when the snapshot holds each of its features under the
same definition: a feature that kept its name but changed its meaning (`features.windows` changed the
window of weekend_share) would otherwise be scored silently as if it were the one the model learnt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

SNAPSHOT_DEFINITIONS = "feature_definitions"  # snapshot meta: {feature: definition hash}
SNAPSHOT_DIGEST = "feature_definitions_digest"  # snapshot meta: one digest of them, cheap to compare
SNAPSHOT_WINDOWS = "feature_windows"  # snapshot meta: the windows (days) the snapshot was built with


def definitions_digest(definitions: dict[str, str]) -> str:
    """One digest of {feature: definition hash}: equal digests, equal definitions."""
    return hashlib.sha256(json.dumps(sorted(definitions.items())).encode()).hexdigest()[:16]


def snapshot_meta(definitions: dict[str, str], windows: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """What a publish adds to the snapshot's meta so that a service can check its models against it."""
    return {SNAPSHOT_DEFINITIONS: dict(definitions), SNAPSHOT_DIGEST: definitions_digest(definitions),
            SNAPSHOT_WINDOWS: list(windows)}


@dataclass(frozen=True)
class Breach:
    """How a model's features and a snapshot's disagree: features defined differently, features absent."""

    changed: tuple[str, ...]
    missing: tuple[str, ...]

    def describe(self, limit: int = 8) -> str:
        parts = []
        for names, what in ((self.changed, "defined differently"), (self.missing, "not published")):
            if names:
                shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
                parts.append(f"{shown} {what}")
        return "; ".join(parts)


def breach(needed: dict[str, str], held: dict[str, str]) -> Breach | None:
    """Where the snapshot's definitions (`held`) break a model's (`needed`), or None when it holds them all."""
    changed = tuple(n for n, h in needed.items() if n in held and held[n] != h)
    missing = tuple(n for n in needed if n not in held)
    return Breach(changed, missing) if changed or missing else None


def refusal(model: str, version: str, task: str, needed: dict[str, str], model_windows: list[int],
            meta: dict[str, Any]) -> str | None:
    """Why the service must not serve `model` v`version` on the snapshot described by `meta` (one line that
    says what to run), or None when the snapshot holds every feature it needs under the same definition."""
    if not meta.get("as_of"):
        return None  # nothing published: by id nothing is found; posted features are checked one by one
    held = meta.get(SNAPSHOT_DEFINITIONS)
    if held is None:
        return (f"{model} v{version}: the online store's snapshot ({meta.get('as_of')}) was published without "
                f"feature definitions (by an older crmscore), so its features cannot be checked against the "
                f"model's: run `crmscore features publish --config C` again")
    found = breach(needed, held)
    if found is None:
        return None
    windows = meta.get(SNAPSHOT_WINDOWS)
    return (f"{model} v{version} was trained on features the online store does not hold under the same "
            f"definitions: {found.describe()} (model windows {list(model_windows)} days, snapshot "
            f"{windows if windows is not None else 'unknown'} from config {meta.get('config')!r}, as of "
            f"{meta.get('as_of')}): retrain it on the published features (`crmscore train {task} --config C`) "
            f"or publish with the model's config (`crmscore features publish --config C` with features.windows "
            f"{list(model_windows)}), then POST /v1/admin/reload")
