"""A renderer process: ``python -m conduit.isolation.child --memory-mb N --parent-pid P``.

It parses messages and renders payload templates for the process that started it
(conduit/isolation/pool.py), one item at a time, reading requests from stdin and writing
answers to stdout (conduit/isolation/frames.py). Started fresh (exec, not fork), it holds
none of its parent's event loop, database connections or sockets. It caps its own address
space before it reads any request, so a message or template that needs more memory fails
here with MemoryError (answered, then this process exits: the pool starts a new one); its
parent kills it when an item overruns its time budget. It dies with its parent.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import resource
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conduit.isolation import frames
from conduit.isolation.lifetime import die_with_parent
from conduit.isolation.progress import Progress
from conduit.mail.parse import PayloadLinks
from conduit.mail.render import message_payload, payload_body
from conduit.mail.templates import TemplateRenderError, compile_template

MEMORY_EXIT = 3  # the exit status after answering an item with "memory"
# Below the event loops that answer SMTP and the API: a template that burns its whole budget
# takes CPU from them only when they leave it some. A renderer needs a small part of a core
# under full load, far below what this priority still gets when every process is busy.
NICENESS = 5
MAX_PENDING = 64  # answers held back at most
FLUSH_BEFORE_BYTES = 64 * 1024  # answers held back are written before an item this big


@dataclass
class _Message:
    """The stored message's fields, as conduit.mail.render.StoredMessage wants them."""

    id: str
    raw: bytes
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    remote_ip: str
    helo: str
    tls: bool
    auth_user: str | None
    auth_results: dict[str, Any]
    spam: dict[str, Any] | None = None


@dataclass
class _Webhook:
    id: str
    address: str
    payload_template: str | None


def _render(header: dict[str, Any], raw: bytes, progress: Progress, ends_at: float) -> tuple[dict[str, Any], bytes]:
    fields = header["message"]
    message = _Message(raw=raw, **{**fields, "received_at": datetime.fromisoformat(fields["received_at"])})
    webhook = _Webhook(**header["webhook"])
    links = header.get("links")
    payload = message_payload(message, webhook, rcpt_to=header["rcpt_to"], simulated=header["simulated"],
                              max_inline_attachment_bytes=header["max_inline_attachment_bytes"],
                              extract_reply=header["extract_reply"], links=PayloadLinks(**links) if links else None)
    payload["parse_warnings"].extend(header["notes"])
    if webhook.payload_template:
        progress.enter(header["id"], "template")
    try:
        body, content_type = payload_body(payload, raw, webhook.payload_template, timeout=header["timeout"],
                                          deadline=ends_at)
    except TemplateRenderError as exc:
        return {"ok": False, "kind": "template", "stage": "template", "error": str(exc)}, b""
    return {"ok": True, "content_type": content_type}, body


def _compile(header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    try:
        compile_template(header["template"])
    except ValueError as exc:
        return {"ok": False, "kind": "invalid", "stage": "compile", "error": str(exc)}, b""
    return {"ok": True}, b""


def _answer(header: dict[str, Any], body: bytes, progress: Progress) -> tuple[dict[str, Any], bytes]:
    started = time.monotonic()
    stage = "compile" if header["op"] == "compile" else "parse"
    progress.start(header["id"], stage, started)
    if started >= header["deadline"]:
        return {"ok": False, "kind": "late", "stage": stage, "error": "the item's deadline passed"}, b""
    ends_at = min(started + header["timeout"], header["deadline"])
    try:
        if stage == "compile":
            return _compile(header)
        return _render(header, body, progress, ends_at)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug or a surprise in parsing: reported, never fatal
        return {"ok": False, "kind": "error", "stage": progress.read().stage,
                "error": f"{type(exc).__name__}: {exc}"}, b""


def serve(stdin: Any, out: int, progress: Progress) -> None:
    """Answer requests until the parent closes the pipe.

    Answers are written when the parent marks the end of a batch (``flush``), before an
    item that may take long (a big message, a template: answers held back would be lost if
    the parent has to kill this process during it), and before this process exits: under
    load, one write and one wake-up of the parent per batch of plain messages. Which item is
    running is in ``progress`` meanwhile.
    """
    frames.write_all(out, frames.encode({"ready": True, "pid": os.getpid()}))
    pending: list[bytes] = []
    while (request := frames.read_frame(stdin)) is not None:
        header, body = request
        del request
        if pending and _may_take_long(header, body):
            frames.write_all(out, b"".join(pending))  # or a kill during this item would lose them
            pending.clear()
        try:
            answer, answer_body = _answer(header, body, progress)
        except MemoryError:
            pass  # answered below, once leaving this block has freed what the item held
        else:
            pending.append(frames.encode({"id": header["id"], **answer}, answer_body))
            del answer_body
            if header.get("flush") or len(pending) >= MAX_PENDING:
                frames.write_all(out, b"".join(pending))
                pending.clear()
            continue
        del body
        pending.append(frames.encode({"id": header["id"], "ok": False, "kind": "memory",
                                      "stage": progress.read().stage, "error": "MemoryError"}))
        frames.write_all(out, b"".join(pending))
        os._exit(MEMORY_EXIT)  # a process's state after a MemoryError is not to be trusted


def _may_take_long(header: dict[str, Any], body: bytes) -> bool:
    return len(body) > FLUSH_BEFORE_BYTES or header["op"] != "render" or bool(header["webhook"]["payload_template"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="conduit.isolation.child")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--progress-fd", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    faulthandler.enable()  # a crash (native code at the memory limit) leaves a traceback in the log
    os.nice(NICENESS)
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Answers go to a private copy of stdout; anything printed by mistake goes to stderr (the log).
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(0, "rb", buffering=64 * 1024, closefd=False) as stdin:
        serve(stdin, out, Progress(args.progress_fd))


if __name__ == "__main__":
    main()
