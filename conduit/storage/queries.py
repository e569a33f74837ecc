"""Named SQL statements, read once from a file per dialect (conduit/storage/sql/), as
procrastinate keeps its queries in ``sql/queries.sql``: each statement follows a
``-- name: NAME`` line. ``{jobs}``, ``{messages}`` and ``{webhooks}`` stand for each table's
columns, qualified, in the models' order (the order of ``JobRow``, ``MessageRow``, ``WebhookRow``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table

from conduit.storage.interfaces import Claimed, JobRow, MessageRow, WebhookRow
from conduit.storage.models import DeliveryJob, DeliveryLog, Message, Webhook

JOBS = cast(Table, DeliveryJob.__table__)
MESSAGES = cast(Table, Message.__table__)
WEBHOOKS = cast(Table, Webhook.__table__)
LOGS = cast(Table, DeliveryLog.__table__)

SQL_DIR = Path(__file__).parent / "sql"
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_COLUMNS = {table.name: ", ".join(f"{table.name}.{column.name}" for column in table.c)
            for table in (JOBS, MESSAGES, WEBHOOKS)}
_MESSAGE_AT = len(JobRow._fields)  # where a claimed row turns from job to message
_WEBHOOK_AT = _MESSAGE_AT + len(MessageRow._fields)  # and from message to webhook


def load(dialect: str) -> dict[str, str]:
    """The statements of ``sql/<dialect>.sql`` by name (comments kept out)."""
    text = (SQL_DIR / f"{dialect}.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)[1:]
    queries = {}
    for name, body in zip(parts[::2], parts[1::2], strict=True):
        statement = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        queries[name] = statement.rstrip(";").format(jobs=_COLUMNS["delivery_jobs"], messages=_COLUMNS["messages"],
                                                     webhooks=_COLUMNS["webhooks"])
    return queries


def split_claimed(rows: Sequence[Sequence[Any]]) -> list[Claimed]:
    """Claimed rows (a job's columns, its message's, its webhook's) as (job, message, webhook); a
    message going to several webhooks is kept once."""
    messages: dict[str, MessageRow] = {}
    return list(_split(rows, messages))


def _split(rows: Sequence[Sequence[Any]], messages: dict[str, MessageRow]) -> Iterator[Claimed]:
    for row in rows:
        job = JobRow._make(row[:_MESSAGE_AT])
        message = messages.get(job.message_id)
        if message is None:
            message = messages[job.message_id] = MessageRow._make(row[_MESSAGE_AT:_WEBHOOK_AT])
        yield job, message, WebhookRow._make(row[_WEBHOOK_AT:])
