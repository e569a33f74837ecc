"""CONDUIT_LOG_FORMAT: what a log line looks like, as text and as JSON."""

from __future__ import annotations

import json
import logging

from conduit.observability.logs import TEXT_FORMAT, JsonFormatter, TextFormatter, log_event, parse_message


class Collect(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def logger_with(formatter: logging.Formatter) -> tuple[logging.Logger, Collect]:
    logger = logging.getLogger(f"conduit.test.{id(formatter)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Collect(formatter)
    logger.handlers[:] = [handler]
    return logger, handler


def test_an_event_is_one_json_object_with_its_typed_fields():
    logger, out = logger_with(JsonFormatter())
    log_event(logger, logging.INFO, "http_request", method="GET", status=201, duration_ms=3.5,
              route="/api/v1/webhooks/{id}")
    [line] = out.lines
    record = json.loads(line)
    assert record["event"] == "http_request"
    assert record["level"] == "info"
    assert record["logger"] == logger.name
    assert record["timestamp"].endswith("+00:00")
    assert (record["status"], record["duration_ms"], record["route"]) == (201, 3.5, "/api/v1/webhooks/{id}")


def test_an_event_as_text_quotes_values_with_spaces():
    logger, out = logger_with(logging.Formatter("%(message)s"))
    log_event(logger, logging.INFO, "smtp_refused", code=550, reply="5.1.1 No such recipient here", ip="192.0.2.1")
    assert out.lines == ['event=smtp_refused code=550 reply="5.1.1 No such recipient here" ip=192.0.2.1']


def test_a_text_line_is_the_one_the_stdlib_formatter_writes():
    """TextFormatter keeps each second's text; logging.Formatter is the oracle, across seconds
    and at their edges."""
    ours, stdlib = TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    for created in (1_765_000_000.0, 1_765_000_000.999, 1_765_000_001.0005, 1_765_000_001.5, 1_765_003_600.25,
                    1_765_000_000.5):
        record = logging.LogRecord("conduit.smtp", logging.INFO, __file__, 1, "event=x id=%s", ("msg_1",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == stdlib.format(record)
    assert ours.formatTime(record, "%H:%M") == stdlib.formatTime(record, "%H:%M")


def test_plain_messages_are_split_into_fields_or_kept_whole():
    assert parse_message("event=claim_failed error=OSError('no route to host')") == (
        "claim_failed", {"error": "OSError('no route to host')"})
    assert parse_message('event=smtp_refused reply="5.1.1 No such" code=550') == (
        "smtp_refused", {"reply": "5.1.1 No such", "code": "550"})
    assert parse_message("Uvicorn running on http://127.0.0.1:8080") == (
        "message", {"message": "Uvicorn running on http://127.0.0.1:8080"})


def test_an_exception_travels_in_the_json_object():
    logger, out = logger_with(JsonFormatter())
    try:
        raise ValueError("broken \udcff bytes")
    except ValueError:
        logger.exception("event=delivery_crashed job=%s", "job_1")
    record = json.loads(out.lines[0])
    assert record["event"] == "delivery_crashed"
    assert record["job"] == "job_1"
    assert "ValueError" in record["exception"]
