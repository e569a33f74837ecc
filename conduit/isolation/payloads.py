"""What the rest of Conduit asks of the renderer processes: a delivery's body, a template check.

A delivery's item is parsing (with reply extraction) and then, if the webhook has one, its
template. When the parse cannot finish within its budget, the message is parsed again
without the parts that may be left out (reply extraction; after running out of memory,
attachment contents too), which the payload's ``parse_warnings`` then say; a template that
fails, or a message that cannot be parsed even so, fails the attempt with a RenderFailed
saying which budget ran out.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol

from conduit.isolation.pool import RenderPool, Reply
from conduit.mail.parse import PayloadLinks
from conduit.mail.render import Destination, StoredMessage
from conduit.mail.templates import (
    MAX_SOURCE_BYTES,
    memory_budget_exceeded,
    time_budget_exceeded,
)

_BUDGET_FAILURES = frozenset({"time", "memory", "crashed", "error"})  # of a parse: worth a lighter one
REQUEST_WAIT = 10.0  # seconds an API request waits at most for its item: a renderer may be starting


class RenderFailed(Exception):
    """The attempt's body could not be made; the message says why, for the delivery log."""


class RendererBusy(RenderFailed):
    """No renderer process was free before the deadline: nothing is wrong with the input."""


class OwnedDestination(Destination, Protocol):
    """A webhook as the renderer sees it: whose account it is decides whose turn it is."""

    @property
    def account_id(self) -> str: ...


def default_deadline(pool: RenderPool) -> float:
    """For callers without a lease to respect (API requests): time to wait for a renderer
    process (one may be starting), parse and render."""
    return time.monotonic() + max(3 * pool.timeout, REQUEST_WAIT)


async def render_body(pool: RenderPool, message: StoredMessage, webhook: OwnedDestination, *, rcpt_to: str,
                      simulated: bool, max_inline_attachment_bytes: int, deadline: float | None = None,
                      links: PayloadLinks | None = None) -> tuple[bytes, str]:
    """(body, content type), rendered in a renderer process by ``deadline`` (time.monotonic()).

    Raises RenderFailed when the template fails or the message cannot be parsed: the
    caller fails that attempt with the message.
    """
    if deadline is None:
        deadline = default_deadline(pool)
    header = _request(message, webhook, rcpt_to=rcpt_to, simulated=simulated,
                      max_inline_attachment_bytes=max_inline_attachment_bytes)
    if links is not None:
        header["links"] = {"raw_url": links.raw_url, "attachment_url": links.attachment_url}
    reply = await pool.submit(header, message.raw, key=webhook.account_id, deadline=deadline)
    if not reply.ok and reply.stage == "parse" and reply.kind in _BUDGET_FAILURES:
        header = {**header, "extract_reply": False, "notes": [_left_out(pool, reply)]}
        if reply.kind != "time":  # out of memory (or dead): the attachments' base64 is the bulk
            header["max_inline_attachment_bytes"] = 0
        reply = await pool.submit(header, message.raw, key=webhook.account_id, deadline=deadline, first=True)
    if reply.ok:
        return reply.body, reply.content_type
    raise (RendererBusy if reply.kind == "late" else RenderFailed)(_explain(pool, reply))


async def check_template(pool: RenderPool, source: str, *, key: str) -> None:
    """Compile ``source`` in a renderer process; ValueError says why it cannot be used."""
    if not isinstance(source, str):
        raise ValueError("payload_template must be a string")  # a ValueError: the API answers 422, as compile_template
    if len(source.encode("utf-8", errors="surrogatepass")) > MAX_SOURCE_BYTES:  # no need to send it
        raise ValueError(f"payload_template is larger than {MAX_SOURCE_BYTES // 1024} KiB")
    reply = await pool.submit({"op": "compile", "template": source}, key=key, deadline=default_deadline(pool))
    if reply.ok:
        return
    if reply.kind in ("late", "closed"):
        raise RendererBusy("the template could not be checked now: every renderer process is busy")
    if reply.kind == "invalid":
        raise ValueError(reply.error)
    if reply.kind == "time":
        raise ValueError(f"payload_template could not be compiled within its time budget of {pool.timeout:g} s")
    if reply.kind == "memory":
        raise ValueError(f"payload_template could not be compiled within its memory budget of {pool.memory_mb} MiB")
    raise ValueError(f"payload_template could not be compiled: {reply.error}")


def _request(message: StoredMessage, webhook: Destination, *, rcpt_to: str, simulated: bool,
             max_inline_attachment_bytes: int) -> dict[str, Any]:
    received_at: datetime = message.received_at
    return {
        "op": "render",
        "message": {"id": message.id, "received_at": received_at.isoformat(), "mail_from": message.mail_from,
                    "rcpt_to": list(message.rcpt_to), "remote_ip": message.remote_ip, "helo": message.helo,
                    "tls": message.tls, "auth_user": message.auth_user, "auth_results": message.auth_results or {},
                    "spam": message.spam},
        "webhook": {"id": webhook.id, "address": webhook.address, "payload_template": webhook.payload_template},
        "rcpt_to": rcpt_to, "simulated": simulated, "max_inline_attachment_bytes": max_inline_attachment_bytes,
        "extract_reply": True, "notes": [],
    }


def _left_out(pool: RenderPool, reply: Reply) -> str:
    """The parse warning of a payload made without its optional parts."""
    if reply.kind == "time":
        return f"reply_text was not extracted: parsing the message exceeded its time budget of {pool.timeout:g} s"
    return ("reply_text was not extracted and attachment contents were left out: parsing the message "
            f"{_parse_failure(pool, reply)}")


def _parse_failure(pool: RenderPool, reply: Reply) -> str:
    if reply.kind == "time":
        return f"exceeded its time budget of {pool.timeout:g} s"
    if reply.kind == "memory":
        return f"exceeded its memory budget of {pool.memory_mb} MiB"
    if reply.kind == "crashed":  # native code (orjson, say) dies instead of raising MemoryError
        return f"exceeded its memory budget of {pool.memory_mb} MiB ({reply.error})"
    return f"failed ({reply.error})"


def _explain(pool: RenderPool, reply: Reply) -> str:
    """The delivery log's words for a failed item."""
    if reply.kind == "late":
        return "rendering could not finish in time: every renderer process was busy"
    if reply.kind == "closed":
        return "rendering was interrupted: Conduit is shutting down"
    if reply.stage == "parse":
        return f"the message could not be parsed: parsing it {_parse_failure(pool, reply)}"
    if reply.kind == "template":
        return reply.error
    if reply.kind == "time":
        return time_budget_exceeded(pool.timeout)
    if reply.kind == "memory":
        return memory_budget_exceeded(pool.memory_mb)
    if reply.kind == "crashed":
        return f"{memory_budget_exceeded(pool.memory_mb)} ({reply.error})"
    return f"payload_template: {reply.error}"
