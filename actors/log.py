"""The one logger of the Ray shells: loguru, readable by default, one JSON object per line on request.

Configured when a shell first imports this module, in every process (a job submitted to a cluster
included), from two environment variables: ``LOGURU_LEVEL`` (default INFO; loguru's own default is
DEBUG) and ``TICKVISOR_LOG_FORMAT`` (``text``, the default, or ``json``; ``supervisor.py
--log-format`` sets it for the job and the workers of its local Ray). The pure core never logs.

Every line passes through ``scrub`` before it is written, message and exception text alike: each
``token=...`` in a URL becomes ``token=***`` and every secret registered with ``hide`` (the AllTick
token, in the driver and in each Connection) is replaced by ``***`` wherever it appears. loguru's
``diagnose`` (variable values in tracebacks) is off, since a value could be the token.

Lines about one connection carry its ``connection`` id and ``endpoint`` as fields: a Connection
actor's process sets them for all its lines (``for_connection``), other actors use ``about(conn_id)``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

from loguru import logger

from actors.core.tokens import Secret, redact

DEFAULT_LEVEL = "INFO"
FORMAT_ENV = "TICKVISOR_LOG_FORMAT"
FORMATS = ("text", "json")
HIDDEN = "***"

_secrets: set[str] = set()
_stream: list[TextIO | None] = [None]  # None: sys.stderr at the time of writing


def hide(secret: Secret | str) -> None:
    """Never write ``secret`` in a log line of this process."""
    value = secret.reveal() if isinstance(secret, Secret) else secret
    if value:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` without a token: URL tokens redacted, every hidden secret replaced."""
    text = redact(text)
    for secret in _secrets:
        text = text.replace(secret, HIDDEN)
    return text


def _out() -> TextIO:
    return _stream[0] or sys.stderr


def _fields(extra: dict[str, Any]) -> str:
    return "".join(f" {k}={v}" for k, v in sorted(extra.items()))


def _text_format(record: Any) -> str:
    extra = " |{extra_fields}" if record["extra"] else ""
    record["extra_fields"] = _fields(record["extra"]) if extra else ""
    return (
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
        + extra
        + "\n{exception}"
    )


def _text_sink(message: Any) -> None:
    _out().write(scrub(str(message)))


def _json_sink(message: Any) -> None:
    record = message.record
    obj: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
        "function": record["function"],
        "line": record["line"],
        "pid": record["process"].id,
    }
    obj.update({k: v for k, v in record["extra"].items() if k != "extra_fields"})
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        obj["exception"] = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    obj = {k: scrub(v) if isinstance(v, str) else v for k, v in obj.items()}
    text = json.dumps(obj, default=str, ensure_ascii=False)
    for secret in _secrets:  # a secret in a non-text field, or as JSON escapes it
        text = text.replace(secret, HIDDEN)
    _out().write(text + "\n")


def configure(fmt: str | None = None, level: str | None = None, stream: TextIO | None = None) -> None:
    """(Re)configure this process's handler; defaults from the environment (see the module doc).

    Raises:
        ValueError: ``fmt`` is not ``text`` or ``json``.

    """
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    _stream[0] = stream
    logger.remove()
    level = level or os.environ.get("LOGURU_LEVEL", DEFAULT_LEVEL)
    if fmt == "json":
        logger.add(_json_sink, level=level, format="{message}", diagnose=False, backtrace=False)
    else:
        logger.add(
            _text_sink, level=level, format=_text_format, diagnose=False, backtrace=False, colorize=False
        )


def endpoint_of_connection(conn_id: str) -> str:
    """``stock`` of ``stock-0`` (connection ids are ``<endpoint>-<i>``: actors.children)."""
    return conn_id.rsplit("-", 1)[0]


def for_connection(conn_id: str, endpoint: str, token: Secret | str) -> None:
    """For a Connection actor: every line carries its id and endpoint; its token is hidden."""
    hide(token)
    logger.configure(extra={"connection": conn_id, "endpoint": endpoint})


def about(conn_id: str) -> Any:
    """The logger for a line about connection ``conn_id`` from another actor."""
    return logger.bind(connection=conn_id, endpoint=endpoint_of_connection(conn_id))


configure()

__all__ = ["about", "configure", "for_connection", "hide", "logger", "scrub"]
