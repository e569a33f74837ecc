"""The renderer pool with real renderer processes: what a delivery gets back for each kind of
untrusted work (fine, a failing template, one past its time or memory budget, a message too big
to parse within its memory), and that the pool recovers, keeps accounts apart and closes cleanly.
Timing bounds live in tests/e2e/test_untrusted_work.py; here only outcomes and their order."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from conduit.isolation import (
    RendererBusy,
    RenderFailed,
    RenderPool,
    check_template,
    render_body,
)
from conduit.mail.render import render

WORDWRAP = "{{ (('x' * 1000000) ~ ('x' * 1000000))|wordwrap(1)|length }}"
# Distinct strings of a megabyte each, kept: past any small memory budget, each value under the size limits.
HOARD = ("{% set s = 'x' * 1000000 %}{% set ns = namespace(l=[]) %}"
         "{% for i in range(1000) %}{% set ns.l = ns.l + [s ~ i] %}{% endfor %}{{ ns.l|length }}")


@dataclass
class Message:
    raw: bytes
    id: str = "msg_1"
    received_at: datetime = field(default_factory=lambda: datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    mail_from: str = "ann@sender.example"
    rcpt_to: list[str] = field(default_factory=lambda: ["box@in.example"])
    remote_ip: str = "192.0.2.1"
    helo: str = "mx.sender.example"
    tls: bool = True
    auth_user: str | None = None
    auth_results: dict = field(default_factory=lambda: {"spf": {"result": "pass", "domain": "sender.example"}})
    spam: dict | None = None


@dataclass
class Hook:
    payload_template: str | None = None
    account_id: str = "acc_a"
    id: str = "whk_1"
    address: str = "box@in.example"


def _mail(body: str = "Hi there\n\nOn Mon, Ann wrote:\n> earlier\n", attachment_mib: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = "box@in.example"
    message["Subject"] = "Hello"
    message.set_content(body)
    if attachment_mib:
        message.add_attachment(os.urandom(attachment_mib << 20), maintype="application", subtype="octet-stream",
                               filename="big.bin")
    return bytes(message)


@pytest.fixture
async def pool():
    pool = RenderPool(processes=2, memory_mb=192, timeout=1.0)
    yield pool
    await pool.close()


async def _render(pool: RenderPool, hook: Hook, raw: bytes | None = None, **options) -> tuple[bytes, str]:
    return await render_body(pool, Message(raw or _mail()), hook, rcpt_to="box@in.example", simulated=False,
                             max_inline_attachment_bytes=25 << 20, **options)


async def test_the_body_is_the_one_rendered_in_process(pool):
    message = Message(_mail(attachment_mib=1))
    for hook in (Hook(), Hook('{"s": {{ subject|tojson }}, "r": {{ reply_text|tojson }}, "n": {{ raw|length }}}'),
                 Hook("plain {{ from[0].address }}")):
        expected = render(message, hook, rcpt_to="box@in.example", simulated=False,
                          max_inline_attachment_bytes=25 << 20)
        assert await render_body(pool, message, hook, rcpt_to="box@in.example", simulated=False,
                                 max_inline_attachment_bytes=25 << 20) == expected


async def test_a_template_error_is_the_attempts_error(pool):
    with pytest.raises(RenderFailed, match=r"^payload_template line 2: .*'nope' is undefined"):
        await _render(pool, Hook("ok\n{{ nope }}"))


async def test_a_template_past_its_time_budget_is_killed_and_its_process_replaced(pool):
    await _render(pool, Hook())
    before = set(pool.pids)
    with pytest.raises(RenderFailed, match=r"^payload_template exceeded its time budget of 1 s$"):
        await _render(pool, Hook(WORDWRAP))
    body, _ = await _render(pool, Hook("{{ subject }}"))
    assert body == b"Hello"
    assert len(pool.pids) == 2 and before - set(pool.pids), "the killed process was not replaced"


async def test_template_code_that_loops_gets_the_friendly_deadline(pool):
    with pytest.raises(RenderFailed, match=r"^payload_template exceeded its time budget of 1 s$"):
        await _render(pool, Hook("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"))


async def test_a_template_past_its_memory_budget_fails_and_the_pool_goes_on(pool):
    with pytest.raises(RenderFailed, match=r"^payload_template exceeded its memory budget of 192 MiB"):
        await _render(pool, Hook(HOARD))
    assert (await _render(pool, Hook("{{ subject }}")))[0] == b"Hello"


async def test_a_message_too_big_to_parse_in_memory_is_sent_without_the_parts_that_can_go():
    """Full parse: the attachments' base64 and the JSON do not fit in 128 MiB; without them it does."""
    pool = RenderPool(processes=1, memory_mb=128, timeout=2.0)
    try:
        body, content_type = await _render(pool, Hook(), _mail(attachment_mib=12))
    finally:
        await pool.close()
    payload = json.loads(body)
    assert content_type == "application/json"
    assert payload["subject"] == "Hello" and payload["text"].startswith("Hi there")
    assert payload["reply_text"] is None
    assert [a["content_omitted"] for a in payload["attachments"]] == [True]
    assert payload["attachments"][0]["size"] == 12 << 20
    (note,) = payload["parse_warnings"]
    assert note.startswith("reply_text was not extracted and attachment contents were left out: parsing the "
                           "message exceeded its memory budget of 128 MiB")


async def test_a_message_that_cannot_be_parsed_within_its_time_fails_the_attempt():
    """A budget far below what a 20 MiB message takes: the full parse and the lighter one both overrun."""
    pool = RenderPool(processes=1, memory_mb=768, timeout=0.01)
    try:
        with pytest.raises(RenderFailed, match=r"^the message could not be parsed: parsing it exceeded its time "
                                               r"budget of 0.01 s$"):
            await _render(pool, Hook(), _mail(attachment_mib=20), deadline=time.monotonic() + 30)
    finally:
        await pool.close()


async def test_one_accounts_slow_items_leave_a_process_for_another_account(pool):
    """Account A's items each hold a process for their whole budget; account B's item, sent after
    them, is answered before the first of A's ends."""
    await asyncio.gather(_render(pool, Hook()), _render(pool, Hook(account_id="acc_b")))  # both processes up
    finished: list[str] = []

    async def run(name: str, hook: Hook) -> None:
        try:
            await _render(pool, hook, deadline=time.monotonic() + 30)
        except RenderFailed:
            pass
        finished.append(name)

    slow = [asyncio.create_task(run(f"a{i}", Hook(WORDWRAP))) for i in range(3)]
    await asyncio.sleep(0.1)
    await run("b", Hook("{{ subject }}", account_id="acc_b"))
    await asyncio.gather(*slow)
    assert finished == ["b", "a0", "a1", "a2"]


async def test_an_item_that_cannot_start_by_its_deadline_fails_as_busy():
    pool = RenderPool(processes=1, memory_mb=192, timeout=1.0)
    try:
        await _render(pool, Hook())
        hostile = asyncio.create_task(_render(pool, Hook(WORDWRAP)))
        await asyncio.sleep(0.1)
        with pytest.raises(RendererBusy, match="every renderer process was busy"):
            await _render(pool, Hook(account_id="acc_b"), deadline=time.monotonic() + 0.3)
        with pytest.raises(RenderFailed, match="time budget"):
            await hostile
    finally:
        await pool.close()


async def test_templates_are_checked_in_a_renderer_process(pool):
    await check_template(pool, '{"s": {{ subject|tojson }}}', key="acc_a")
    cases = {
        "{{ subject }": "payload_template line 1: unexpected '}'",
        "{{ a" + "|lower" * 1000 + " }}": "payload_template is nested too deeply to compile",
        "{% if a %}" * 300 + "x" + "{% endif %}" * 300: "payload_template is nested too deeply to compile",
        "{{ " + "[" * 500 + "]" * 500 + " }}": "payload_template is nested too deeply to compile",
        "{% for a in b %}" * 100 + "{% endfor %}" * 100: "payload_template is nested too deeply to compile",
        "x" * (64 * 1024 + 1): "payload_template is larger than 64 KiB",
    }
    for source, error in cases.items():
        with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace("[", r"\[")):
            await check_template(pool, source, key="acc_a")


async def test_closing_fails_what_waits_and_ends_the_processes():
    pool = RenderPool(processes=1, memory_mb=192, timeout=1.0)
    await _render(pool, Hook())
    pids = pool.pids
    hostile = asyncio.create_task(_render(pool, Hook(WORDWRAP)))
    waiting = asyncio.create_task(_render(pool, Hook()))
    await asyncio.sleep(0.1)
    await pool.close()
    for task in (hostile, waiting):
        with pytest.raises(RenderFailed, match="Conduit is shutting down"):
            await task
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text()
