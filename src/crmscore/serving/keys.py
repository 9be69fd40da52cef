"""API keys. `crmscore keys create NAME` prints a new key once and stores only its SHA-256 hash (keys are
32 random bytes, so a fast hash is enough); CRMSCORE_API_KEYS adds plain keys for containers. Checks
compare in constant time against every known hash."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

PREFIX = "crm_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class KeyRing:
    path: Path
    env_keys: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, home: Path, env_value: str | None) -> KeyRing:
        env = tuple(k.strip() for k in (env_value or "").split(",") if k.strip())
        return cls(Path(home) / "api_keys.json", env)

    def _load(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text())

    def create(self, name: str, admin: bool = False) -> str:
        """A new key (returned once; only its hash is stored)."""
        entries = self._load()
        if any(e["name"] == name for e in entries):
            raise ValueError(f"a key named {name!r} exists already; pick another name or revoke it first")
        key = PREFIX + secrets.token_urlsafe(32)
        entries.append({"name": name, "sha256": _digest(key), "admin": admin})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        return key

    def revoke(self, name: str) -> bool:
        entries = self._load()
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            return False
        self.path.write_text(json.dumps(kept, indent=1))
        return True

    def names(self) -> list[dict]:
        return [{"name": e["name"], "admin": e.get("admin", False)} for e in self._load()]

    def verifier(self) -> KeyVerifier:
        hashes = [(e["sha256"], e["name"], bool(e.get("admin"))) for e in self._load()]
        hashes += [(_digest(k), "env", True) for k in self.env_keys]
        return KeyVerifier(hashes)


@dataclass
class KeyVerifier:
    """(hash, name, admin) triples loaded once at start-up."""

    hashes: list[tuple[str, str, bool]]

    def check(self, key: str | None) -> tuple[str, bool] | None:
        """(key name, is admin) for a valid key, else None; constant time in the key's content."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for h, name, admin in self.hashes:  # no early exit: every hash is compared
            if hmac.compare_digest(h, digest):
                found = (name, admin)
        return found

    def __bool__(self) -> bool:
        return bool(self.hashes)
