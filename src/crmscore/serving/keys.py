"""API keys. `crmscore keys create NAME` prints a new key once and stores only its SHA-256 hash (keys are
32 random bytes, so a fast hash is enough); CRMSCORE_API_KEYS adds plain keys for containers. Checks
compare in constant time against every known hash.

The key file is the one source of truth for every worker and for the operations page: `KeyRing.current()`
stats it on each call (about a microsecond) and re-reads it when its inode, size or modification time
changed, so a revoked key stops working and a new one starts working on the next request, in every worker,
without a restart. Writers (`create`, `revoke`) hold an exclusive lock on a side file for the whole
read-modify-write and replace the file in one step (a temporary file, fsync, os.replace), mode 600:
a reader never sees half a file and two writers never lose each other's change.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "crm_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class KeyRing:
    path: Path
    env_keys: tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _stamp: tuple | None = field(default=None, repr=False, compare=False)
    _verifier: KeyVerifier | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, home: Path, env_value: str | None) -> KeyRing:
        env = tuple(k.strip() for k in (env_value or "").split(",") if k.strip())
        return cls(Path(home) / "api_keys.json", env)

    def _load(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock for a read-modify-write of the key file (other processes wait for it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, entries: list[dict]) -> None:
        """Replace the key file in one step, readable by its owner only."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp creates the file with mode 600
                f.write(json.dumps(entries, indent=1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def create(self, name: str, admin: bool = False) -> str:
        """A new key (returned once; only its hash is stored)."""
        with self._locked():
            entries = self._load()
            if any(e["name"] == name for e in entries):
                raise ValueError(f"a key named {name!r} exists already; pick another name or revoke it first")
            key = PREFIX + secrets.token_urlsafe(32)
            entries.append({"name": name, "sha256": _digest(key), "admin": admin})
            self._write(entries)
        return key

    def revoke(self, name: str) -> bool:
        with self._locked():
            entries = self._load()
            kept = [e for e in entries if e["name"] != name]
            if len(kept) == len(entries):
                return False
            self._write(kept)
        return True

    def names(self) -> list[dict]:
        return [{"name": e["name"], "admin": e.get("admin", False)} for e in self._load()]

    def verifier(self) -> KeyVerifier:
        hashes = [(e["sha256"], e["name"], bool(e.get("admin"))) for e in self._load()]
        hashes += [(_digest(k), "env", True) for k in self.env_keys]
        return KeyVerifier(hashes)

    def current(self) -> KeyVerifier:
        """The verifier of the key file as it is now: re-read when the file changed since the last call."""
        try:
            st = os.stat(self.path)
            stamp: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        verifier = self._verifier
        if verifier is not None and stamp == self._stamp:
            return verifier
        with self._lock:
            if self._verifier is None or stamp != self._stamp:
                self._verifier = self.verifier()
                self._stamp = stamp
            return self._verifier


@dataclass
class KeyVerifier:
    """(hash, name, admin) triples, as read from the key file and CRMSCORE_API_KEYS."""

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
