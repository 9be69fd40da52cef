"""GET /docs.json: BentoML's OpenAPI document of the service, made a valid OpenAPI 3.0 document.

BentoML declares OpenAPI 3.0.2 but copies pydantic's JSON Schema (2020-12) into it: optional fields as
`anyOf: [..., {type: null}]` and `examples` lists, which 3.0 does not have (its own task-status schema too),
so generated clients and schema-driven testers reject it. The document is built once per worker, rewritten
(`nullable: true`, `example`) and served by a small ASGI middleware in front of BentoML's handler.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

NULL = {"type": "null"}


def to_openapi_30(node: Any) -> Any:
    """The same document with JSON Schema 2020-12 constructs replaced by their OpenAPI 3.0 forms."""
    if isinstance(node, list):
        return [to_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("anyOf", "oneOf") and isinstance(v, list) and NULL in v:  # before {type: null} is converted
            rest = [to_openapi_30(o) for o in v if o != NULL]
            if len(rest) == 1 and "$ref" not in rest[0]:
                out.update(rest[0])
            else:
                out[k] = rest
            out["nullable"] = True
        else:
            out[k] = to_openapi_30(v)
    if out.get("type") == "null":  # a field that can only be null
        del out["type"]
        out["nullable"] = True
    if isinstance(out.get("examples"), list):  # a schema's examples (a media type's `examples` is a map)
        examples = out.pop("examples")
        if examples:
            out.setdefault("example", examples[0])
    return out


def service_document(service: Any) -> dict[str, Any]:
    doc = to_openapi_30(json.loads(json.dumps(service.openapi_spec.asdict(), default=str)))
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True  # every API body has required fields
    return doc


class OpenAPIDocument:
    """Pure ASGI middleware answering GET /docs.json with `service_document` (built at the first request)."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/docs.json" and scope.get("method") in ("GET", "HEAD"):
            if self._body is None:
                self._body = json.dumps(service_document(self.service)).encode()
            await Response(self._body, media_type="application/json")(scope, receive, send)
            return
        await self.app(scope, receive, send)
