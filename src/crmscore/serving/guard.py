"""The service's front door, one ASGI middleware in front of every route (BentoML's and ours):

- a request id on every response (the caller's X-Request-ID when it is a sane one, else a new one);
- authentication that fails closed: only the paths in OPEN_PATHS (probes, metrics, the sign-in form and the
  page's style sheet) are served without credentials. Everything else, including any route added later,
  needs `Authorization: Bearer <key>`, or on the operations page (/ui) a signed-in session. /v1/admin needs
  an admin key. Keys are checked against the key file as it is now (KeyRing.current), with the same ring
  the page uses, so a revoked or new key counts at once in every worker and the page and the API agree;
- a body limit counted on the bytes received, chunked bodies included, before anything parses them:
  the body is read here (up to the limit) and handed on; one byte over answers 413 and stops reading.
  An unauthenticated request's body is never read.

A caller without credentials gets 401 (JSON, `WWW-Authenticate: Bearer`), or on a /ui page a redirect to
the sign-in form.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmscore.serving.log_privacy import validation_summary

OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/health", "/metrics", "/ui/login"})
OPEN_PREFIXES = ("/ui/static/",)
LOGIN_FORM_MAX_BYTES = 10_000  # a key and a return path
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SESSION_COOKIE = "crmscore_session"
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")
REWRITTEN = frozenset({400, 404, 405, 422})  # statuses whose framework bodies (not ours) are made our shape


def is_open(path: str) -> bool:
    """True for the few paths served without credentials (exact paths: no prefix opens a subtree but /ui/static/)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def error_response(status: int, message: str, request_id: str, **headers: str) -> JSONResponse:
    """The service's error shape: {"error": "<what to fix>", "request_id": ...}; `error` is always one string."""
    return JSONResponse({"error": message, "request_id": request_id}, status_code=status,
                        headers={"X-Request-ID": request_id, **headers})


def one_line_error(body: bytes, request_id: str) -> bytes:
    """BentoML (400) and FastAPI (422) answer invalid input with a `detail` list (where our schema says one
    string): {"error": "invalid request: customers.0.extra: Extra inputs are not permitted", "request_id": ...}.
    Other bodies (ours, already one string) are left as they are."""
    try:
        payload = json.loads(body)
    except ValueError:  # Starlette's plain-text "Not Found" / "Method Not Allowed"
        text = body.decode("utf-8", "replace").strip()[:100] or "error"
        return json.dumps({"error": text, "request_id": request_id}).encode()
    if not isinstance(payload, dict) or "detail" not in payload:
        return body
    detail = payload["detail"]
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        message = "invalid request: " + validation_summary(detail)
    elif isinstance(detail, str):
        message = detail
    else:
        message = f"invalid request: {payload.get('error') or detail}"
    return json.dumps({"error": message, "request_id": request_id}).encode()


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


class Guard:
    """Pure ASGI middleware (see the module docstring). `authenticator` returns the worker's
    crmscore.ui.auth.Authenticator (looked up at the first request, once the service is set up)."""

    def __init__(self, app: ASGIApp, authenticator: Callable[[], Any], max_body: int) -> None:
        self.app = app
        self._authenticator = authenticator
        self._auth: Any = None
        self.max_body = max_body

    def auth(self) -> Any:
        if self._auth is None:
            self._auth = self._authenticator()
        return self._auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = authorization = length = cookie = ""
        content_type = b""
        for name, value in scope.get("headers", ()):  # ASGI header names are lowercase bytes
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.lower()
        if not REQUEST_ID.fullmatch(request_id):  # none sent, or not a sane id (it is echoed and logged)
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")

        if not is_open(path):
            denied = self._denied(scope, path, authorization, cookie, request_id)
            if denied is not None:
                await denied(scope, receive, send)
                return
        if path.startswith("/v1/") and content_type.startswith(FORM_TYPES):
            await error_response(415, "send the request as JSON (Content-Type: application/json), not a form",
                                 request_id)(scope, receive, send)
            return

        limit = LOGIN_FORM_MAX_BYTES if path == "/ui/login" else self.max_body
        if length.isdigit() and int(length) > limit:
            await self._too_large(scope, receive, send, int(length), limit, request_id)
            return
        body, received = [], 0
        while True:  # the whole body, counted as it arrives (Content-Length may be absent or lie)
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._too_large(scope, receive, send, received, limit, request_id, at_least=True)
                return
            body.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()  # then http.disconnect, when it comes

        held: list[Message] = []  # a 400/422 of BentoML's or FastAPI's input validation, rewritten before it is sent

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                if message["status"] in REWRITTEN and path.startswith("/v1/"):
                    held.append(message)
                    return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
                body = one_line_error(body, request_id)
                start["headers"] = [(k, v) for k, v in start["headers"] if k not in (b"content-length", b"content-type")]
                start["headers"] += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, replay, send_with_id)

    def _denied(self, scope: Scope, path: str, authorization: str, cookie: str, request_id: str) -> Any:
        """The response refusing the request, or None when its credentials are good."""
        key = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if key:
            who = self.auth().verifier().check(key)
            if who is None:
                return error_response(401, "invalid API key", request_id, **{"WWW-Authenticate": "Bearer"})
            if path.startswith("/v1/admin/") and not who[1]:
                return error_response(403, f"key {who[0]!r} is not an admin key", request_id)
            return None
        if path.startswith("/ui/") or path == "/ui":
            session = self.auth().check(_cookie(cookie, SESSION_COOKIE)) if cookie else None
            if session is not None:
                return None
            if scope.get("method") in ("GET", "HEAD"):
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + (f"?{query}" if query else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303,
                                        headers={"X-Request-ID": request_id, "Cache-Control": "no-store"})
        return error_response(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                                   "`crmscore keys create NAME`)", request_id, **{"WWW-Authenticate": "Bearer"})

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, size: int, limit: int, request_id: str,
                         at_least: bool = False) -> None:
        what = f"more than {limit:,} bytes" if at_least else f"{size:,} bytes"
        response = error_response(413, f"request body of {what} is over the limit of {limit:,} bytes",
                                  request_id, Connection="close")
        await response(scope, receive, send)
