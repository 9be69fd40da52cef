"""Sign-in for the operations page: the API key, entered once per browser session.

The login form's key is checked with the same KeyRing verifier as the API (stored SHA-256 hashes and
CRMSCORE_API_KEYS). A valid key gets a session cookie: `crmscore_session`, HttpOnly, SameSite=Lax,
Path=/ui, Secure over HTTPS, no Max-Age (it ends when the browser closes), holding the key's name, an
expiry (CRMSCORE_UI_SESSION_HOURS, default 12) and a fingerprint of the key's hash, signed with HMAC-SHA256.
The key itself is never stored in the cookie. Each request re-checks the signature, the expiry and that
the key is still known (a key revoked with `crmscore keys revoke` ends its sessions at once: the key file
is re-read when it changes, see KeyRing.current). The signing secret is CRMSCORE_UI_SECRET, else a random one created once in
CRMSCORE_HOME/ui_secret (mode 600), shared by the service's workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from crmscore.serving.keys import KeyRing, KeyVerifier

COOKIE = "crmscore_session"


@dataclass(frozen=True)
class Session:
    name: str
    admin: bool
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(home: Path, configured: str | None) -> bytes:
    """CRMSCORE_UI_SECRET, else CRMSCORE_HOME/ui_secret (created once, atomically, readable by the owner only)."""
    if configured:
        return configured.encode()
    path = Path(home) / "ui_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:  # another worker made it first
            pass
    for _ in range(50):  # the other worker may still be writing
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty: delete it and restart the service")


class Authenticator:
    """Checks keys and signs or verifies session cookies."""

    def __init__(self, home: Path, env_keys: str | None, secret: bytes, hours: float = 12.0):
        self.ring = KeyRing.from_settings(home, env_keys)
        self.secret = secret
        self.hours = hours

    def verifier(self) -> KeyVerifier:
        """The key ring as the key file says now (the API's middleware uses the same ring: page and API agree)."""
        return self.ring.current()

    def login(self, key: str) -> str | None:
        """A signed cookie value for a valid key, else None."""
        key = (key or "").strip()
        who = self.verifier().check(key)
        if who is None:
            return None
        payload = {"n": who[0], "a": who[1], "e": int(time.time() + self.hours * 3600), "k": _fingerprint(hashlib.sha256(key.encode()).hexdigest())}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def check(self, cookie: str | None) -> Session | None:
        """The session of a valid, unexpired cookie whose key is still known, else None."""
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            return None
        if payload.get("e", 0) < time.time():
            return None
        known = {_fingerprint(h) for h, _, _ in self.verifier().hashes}
        if payload.get("k") not in known:
            return None
        return Session(str(payload.get("n")), bool(payload.get("a")), float(payload["e"]))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())


def _fingerprint(sha256_hex: str) -> str:
    """Enough of the key's hash to tell keys apart, not enough to help guess one."""
    return sha256_hex[:16]
