"""No customer id or feature value in the service's log.

BentoML logs an invalid request as an ERROR with pydantic's traceback, which quotes the caller's values
(`input_value='jane.doe@example.com'`): 24 lines per bad request. This filter turns such a record into one line
that says where the request was wrong and how, without the values.
"""

from __future__ import annotations

import logging

BENTOML_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


def validation_summary(errors: list[dict]) -> str:
    """`customers.0.extra: Extra inputs are not permitted; ...` (locations and messages; never the input)."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg') or e.get('error') or e.get('type', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


class InvalidRequestSummary(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
            path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            errors = exc.errors(include_input=False, include_context=False, include_url=False)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "invalid request to %s: %s", (path, validation_summary(errors))
            record.exc_info = record.exc_text = None
        return True


def install() -> None:
    for name in BENTOML_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, InvalidRequestSummary) for f in logger.filters):
            logger.addFilter(InvalidRequestSummary())
