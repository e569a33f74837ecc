"""Log output: CONDUIT_LOG_FORMAT=text (a line of ``key=value`` fields after the time, level and
logger) or json (one object per line: timestamp, level, logger, event and the fields).

Conduit's log messages read ``event=name key=value ...``; ``log_event`` writes them with their
fields attached, so the JSON output keeps their types, and messages written as plain text (by
Conduit or a library) are split into fields at each `` key=``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_FIELD_START = re.compile(r" (?=[A-Za-z_][A-Za-z0-9_]*=)")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = re.compile(r"[^\s\"=]+")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields``: as ``event=... key=value`` text, with the fields kept for JSON."""
    if logger.isEnabledFor(level):
        text = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        logger.log(level, "event=%s %s", event, text, extra={"conduit_event": event, "conduit_fields": fields})


def _text(value: Any) -> str:
    """A value as text: bare if it has no space, quote or equals sign, else as a JSON string."""
    text = value if isinstance(value, str) else str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def parse_message(message: str) -> tuple[str, dict[str, Any]]:
    """``event=name a=1 b=two words`` → ("name", {"a": "1", "b": "two words"}); any other text
    → ("message", {"message": text})."""
    parts = _FIELD_START.split(message)
    fields: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not _KEY.fullmatch(key):
            return "message", {"message": message}
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        fields[key] = value
    event = fields.pop("event", None)
    if event is None:
        return "message", {"message": message}
    return str(event), fields


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with the time as ``logging.Formatter`` writes it, the seconds part made
    once per second: a busy server logs every message it takes and every delivery."""

    _second: int | None = None
    _seconds_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - the stdlib's name
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._seconds_text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._seconds_text},{int(record.msecs):03d}"  # the stdlib's default_msec_format


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "conduit_fields", None)
        if fields is not None:
            event = record.conduit_event  # type: ignore[attr-defined]
        else:
            event, fields = parse_message(record.getMessage())
        document: dict[str, Any] = {
            **fields,
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "event": event}
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure(*, level: str, log_format: str) -> None:
    """The root logger's handler, on standard error, in ``log_format`` (as ``logging.basicConfig``:
    a process whose logging is already set up, such as a test run, keeps its handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    # Neither format shows a record's thread or process: not looking them up saves time per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[handler])
