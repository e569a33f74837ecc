"""Spam verdicts from rspamd at the SMTP door, end to end.

A real rspamd (Debian's package, started on loopback by tests/support/rspamd.py) checks what
real SMTP clients send to Conduit's real SMTP server and worker (conduit.runtime.run); webhooks
are received by a real HTTP receiver that verifies the signatures. What rspamd itself cannot be
made to do on demand (answer late, or answer ``soft reject``) is played by a small loopback HTTP
server that speaks rspamd's protocol and records what Conduit sent it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from aiohttp import web

from conduit.storage import refusals
from tests.factories import create_policy, create_webhook
from tests.support.conversation import _eventually, _logs
from tests.support.pipeline import free_port, running
from tests.support.receiver import verify_signature
from tests.support.rspamd import GTUBE, Rspamd, rspamd_binary

PUBLIC = "in.example"
HELO = "mta.sender.example"
SPAM_REJECTED = (550, "5.7.1 Message refused as spam")
SPAM_DEFERRED = (451, "4.7.1 Message deferred by the spam filter, try again later")
SPAM_CHECK_UNAVAILABLE = (451, "4.7.1 Spam filter unavailable, please try again later")
BINARY = rspamd_binary()
needs_rspamd = pytest.mark.skipif(BINARY is None, reason="rspamd is not installed (Debian: apt-get install rspamd)")


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    """One rspamd for the tests that do not stop it."""
    if BINARY is None:
        pytest.skip("rspamd is not installed (Debian: apt-get install rspamd)")
    server = Rspamd(tmp_path_factory.mktemp("rspamd"), BINARY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_rspamd(tmp_path: Path) -> Iterator[Rspamd]:
    """An rspamd that the test may stop."""
    if BINARY is None:
        pytest.skip("rspamd is not installed (Debian: apt-get install rspamd)")
    server = Rspamd(tmp_path / "rspamd", BINARY)
    server.start()
    yield server
    server.stop()


class FakeRspamd:
    """A loopback HTTP server in rspamd's place: it records each request and answers ``verdict``
    after ``delay`` seconds."""

    def __init__(self, verdict: dict | None = None, delay: float = 0.0) -> None:
        self.verdict = verdict or {"is_skipped": False, "score": 2.5, "required_score": 15.0, "action": "no action",
                                   "symbols": {"R_ONE": {"name": "R_ONE", "score": 2.0},
                                               "R_TWO": {"name": "R_TWO", "score": 0.5, "options": ["x"]}}}
        self.delay = delay
        self.requests: list[tuple[str, list[tuple[str, str]], bytes]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _check(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, list(request.headers.items()), await request.read()))
        await asyncio.sleep(self.delay)
        return web.json_response(self.verdict)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeRspamd]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/checkv2", self._check)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        try:
            yield self
        finally:
            await self._runner.cleanup()


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict:
    """Each test sets CONDUIT_RSPAMD_* itself (``_with``)."""
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3", "keep_raw_days": 1,
            "smtp_auth_insecure": True, **getattr(request, "param", {})}


def _with(settings, **changes):
    return settings.model_copy(update=changes)


def _raw(to: str, subject: str = "Hello", body: str = "Hi there, see you at the meeting.\n",
         sender: str = "ann@sender.example") -> bytes:
    message = EmailMessage()
    message["From"] = f"Ann <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Jun 2025 10:00:00 +0000"
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@sender.example>"
    message.set_content(body)
    return message.as_bytes(policy=email_policy.SMTP)


def _gtube(to: str, subject: str = "gtube") -> bytes:
    return _raw(to, subject=subject, body=f"Test message.\n{GTUBE}\n")


async def _reply(awaitable) -> tuple[int, str]:
    try:
        response = await awaitable
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return response.code, response.message


async def _send(settings, rcpts: list[str], raw: bytes, *, sender: str = "ann@sender.example",
                login: tuple[str, str] | None = None) -> dict:
    """One SMTP session: EHLO, AUTH (with ``login``), MAIL, RCPT for each, DATA; every reply."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.smtp_port, start_tls=False, timeout=30,
                           local_hostname=HELO)
    await smtp.connect()
    try:
        await smtp.ehlo()
        if login:
            assert (await _reply(smtp.auth_plain(*login)))[0] == 235
        mail = await _reply(smtp.mail(sender))
        rcpt = [await _reply(smtp.rcpt(address)) for address in rcpts]
        data = await _reply(smtp.data(raw)) if any(code == 250 for code, _ in rcpt) else None
    finally:
        await smtp.quit()
    return {"mail": mail, "rcpt": rcpt, "data": data}


def _queued(sent: dict) -> str:
    assert sent["data"] is not None and sent["data"][0] == 250, sent
    return sent["data"][1].rsplit(" ", 1)[1]


async def _rejections(client, owner, webhook_id: str, count: int = 1) -> list[str]:
    async def probe() -> list[str] | None:
        errors = [log["error"] for log in await _logs(client, owner, webhook_id) if log["status"] == "rejected"]
        return errors if len(errors) >= count else None

    return await _eventually(probe)


def _symbols(spam: dict) -> dict[str, float]:
    return {symbol["name"]: symbol["score"] for symbol in spam["symbols"]}


# --- a real rspamd ------------------------------------------------------------------------

@needs_rspamd
async def test_gtube_is_refused_under_reject_and_nothing_is_stored(settings, client, alice, receiver, rspamd):
    policy = await create_policy(client, alice, spam_action="reject")
    assert (policy["spam_action"], policy["spam_threshold"]) == ("reject", None)
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    async with running(_with(settings, rspamd_url=rspamd.url)):
        refused = await _send(settings, [f"box@{PUBLIC}"], _gtube(f"box@{PUBLIC}"))
        clean = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}", subject="clean"))
        (request,) = await receiver.wait_for(1)
    assert refused["rcpt"] == [(250, "2.1.5 Recipient ok")]
    assert refused["data"] == SPAM_REJECTED
    _queued(clean)
    assert verify_signature(webhook["secret"], request)["subject"] == "clean"
    (error,) = await _rejections(client, alice, webhook["id"])
    assert error.startswith("Message refused as spam: rspamd scored the message 15 (action 'reject')"), error


@needs_rspamd
async def test_a_spam_refusal_is_recorded_for_the_account_with_its_reply(settings, client, alice, receiver, rspamd,
                                                                         database):
    policy = await create_policy(client, alice, spam_action="reject")
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    async with running(_with(settings, rspamd_url=rspamd.url)):
        refused = await _send(settings, [f"box@{PUBLIC}"], _gtube(f"box@{PUBLIC}"))

        async def recorded():
            async with database.sessions() as db:
                return (await refusals.list_refusals(db, alice.id)).items

        (refusal,) = await _eventually(recorded)
    assert refused["data"] == SPAM_REJECTED
    assert (refusal.reason, refusal.reply_code, refusal.reply_text) == ("spam", *SPAM_REJECTED)
    assert (refusal.recipient, refusal.sender, refusal.client_ip) == (f"box@{PUBLIC}", "ann@sender.example",
                                                                      "127.0.0.1")
    assert "rspamd scored the message" in refusal.detail
    assert "XJS*C4JDBQADN1" not in str(vars(refusal))  # the body is never kept


@needs_rspamd
async def test_gtube_is_delivered_flagged_under_deliver(settings, client, alice, receiver, rspamd):
    policy = await create_policy(client, alice)  # spam_action defaults to deliver
    assert policy["spam_action"] == "deliver"
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    plain = await create_webhook(client, alice, f"plain@{PUBLIC}", receiver.url)  # no policy at all
    async with running(_with(settings, rspamd_url=rspamd.url)):
        sent = await _send(settings, [f"box@{PUBLIC}", f"plain@{PUBLIC}"], _gtube(f"box@{PUBLIC}"))
        requests = await receiver.wait_for(2)
    message_id = _queued(sent)
    payloads = {p["webhook"]["id"]: p for p in (json.loads(r.body) for r in requests)}
    verify_signature(webhook["secret"], next(r for r in requests if r.json()["webhook"]["id"] == webhook["id"]))
    for hook in (webhook, plain):
        payload = payloads[hook["id"]]
        assert payload["id"] == message_id
        spam = payload["spam"]
        assert spam["action"] == "reject"
        assert spam["score"] >= spam["required_score"] > 0
        assert "GTUBE" in _symbols(spam)


@needs_rspamd
async def test_clean_mail_passes_with_the_verdict_and_rspamd_saw_the_envelope(settings, client, alice, receiver,
                                                                              rspamd):
    policy = await create_policy(client, alice, spam_action="reject", smtp_credentials="relay:s3cret-relay-pw")
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    async with running(_with(settings, rspamd_url=rspamd.url)):
        sent = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}"), login=("relay", "s3cret-relay-pw"))
        (request,) = await receiver.wait_for(1)
    _queued(sent)
    payload = verify_signature(webhook["secret"], request)
    spam = payload["spam"]
    assert spam["action"] == "no action"
    assert isinstance(spam["score"], float) and spam["score"] < spam["required_score"]
    symbols = _symbols(spam)
    # rspamd compared the envelope Conduit passed on with the headers: the sender and recipient match.
    assert "FROM_EQ_ENVFROM" in symbols and "TO_MATCH_ENVRCPT_ALL" in symbols, symbols
    scores = [symbol["score"] for symbol in spam["symbols"]]
    assert scores == sorted(scores, reverse=True)


@needs_rspamd
async def test_a_spam_threshold_replaces_rspamds_own(settings, client, alice, receiver, rspamd):
    strict = await create_policy(client, alice, name="strict", spam_action="reject", spam_threshold=-50)
    lenient = await create_policy(client, alice, name="lenient", spam_action="reject", spam_threshold=500)
    strict_hook = await create_webhook(client, alice, f"strict@{PUBLIC}", receiver.url,
                                       smtp_security_policy_id=strict["id"])
    lenient_hook = await create_webhook(client, alice, f"lenient@{PUBLIC}", receiver.url,
                                        smtp_security_policy_id=lenient["id"])
    async with running(_with(settings, rspamd_url=rspamd.url)):
        clean_to_strict = await _send(settings, [f"strict@{PUBLIC}"], _raw(f"strict@{PUBLIC}"))
        gtube_to_lenient = await _send(settings, [f"lenient@{PUBLIC}"], _gtube(f"lenient@{PUBLIC}"))
        (request,) = await receiver.wait_for(1)
    assert clean_to_strict["data"] == SPAM_REJECTED
    _queued(gtube_to_lenient)
    assert verify_signature(lenient_hook["secret"], request)["spam"]["action"] == "reject"
    (error,) = await _rejections(client, alice, strict_hook["id"])
    assert "at or above the policy's spam_threshold of -50" in error, error


@needs_rspamd
async def test_recipients_with_different_policies_share_one_reply(settings, client, alice, receiver, rspamd):
    """250 when any recipient's webhook takes the message; the refusing one logs a rejection."""
    rejecting = await create_policy(client, alice, name="rejecting", spam_action="reject")
    refuses = await create_webhook(client, alice, f"refuses@{PUBLIC}", receiver.url,
                                   smtp_security_policy_id=rejecting["id"])
    takes = await create_webhook(client, alice, f"takes@{PUBLIC}", receiver.url)
    also_refuses = await create_webhook(client, alice, f"also@{PUBLIC}", receiver.url,
                                        smtp_security_policy_id=rejecting["id"])
    async with running(_with(settings, rspamd_url=rspamd.url)):
        mixed = await _send(settings, [f"refuses@{PUBLIC}", f"takes@{PUBLIC}"], _gtube(f"takes@{PUBLIC}"))
        only_refusing = await _send(settings, [f"refuses@{PUBLIC}", f"also@{PUBLIC}"], _gtube(f"also@{PUBLIC}"))
        (request,) = await receiver.wait_for(1)
    _queued(mixed)
    assert only_refusing["data"] == SPAM_REJECTED
    assert verify_signature(takes["secret"], request)["webhook"]["id"] == takes["id"]
    assert len(await _rejections(client, alice, refuses["id"], count=2)) == 2
    assert len(await _rejections(client, alice, also_refuses["id"])) == 1


@needs_rspamd
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_rspamd_stopped_mid_run_follows_the_fail_mode(settings, client, alice, receiver, own_rspamd, fail):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(_with(settings, rspamd_url=own_rspamd.url, rspamd_fail=fail)):
        before = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}", subject="before"))
        await receiver.wait_for(1)
        own_rspamd.stop()
        after = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}", subject="after"))
        if fail == "open":
            await receiver.wait_for(2)
    _queued(before)
    payloads = {p["subject"]: p for p in (verify_signature(webhook["secret"], r) for r in receiver.received)}
    assert payloads["before"]["spam"]["action"] == "no action"
    if fail == "open":
        _queued(after)
        assert payloads["after"]["spam"] == {"score": None, "required_score": None, "action": "unavailable",
                                             "symbols": []}
    else:
        assert after["data"] == SPAM_CHECK_UNAVAILABLE
        assert set(payloads) == {"before"}


# --- rspamd played by a loopback server --------------------------------------------------

@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_a_slow_rspamd_hits_the_timeout(settings, client, alice, receiver, fail):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with FakeRspamd(delay=5.0).serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url, rspamd_timeout=0.5, rspamd_fail=fail)):
            sent = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}"))
            if fail == "open":
                (request,) = await receiver.wait_for(1)
    assert len(fake.requests) == 1  # it was asked, and did not answer in time
    if fail == "open":
        _queued(sent)
        assert verify_signature(webhook["secret"], request)["spam"]["action"] == "unavailable"
    else:
        assert sent["data"] == SPAM_CHECK_UNAVAILABLE
        assert receiver.received == []


async def test_conduit_passes_the_smtp_facts_as_rspamds_headers(settings, client, alice, receiver):
    policy = await create_policy(client, alice, smtp_credentials="relay:s3cret-relay-pw")
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    raw = _raw(f"box@{PUBLIC}")
    async with FakeRspamd().serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url)):
            sent = await _send(settings, [f"box@{PUBLIC}", f"Box+tag@{PUBLIC}"], raw, sender="ann@sender.example",
                               login=("relay", "s3cret-relay-pw"))
            (request,) = await receiver.wait_for(1)
    _queued(sent)
    ((path, headers, body),) = fake.requests
    assert path == "/checkv2"
    assert body == raw
    named = [(name.lower(), value) for name, value in headers]
    assert ("ip", "127.0.0.1") in named
    assert ("helo", HELO) in named
    assert ("from", "ann@sender.example") in named
    assert [value for name, value in named if name == "rcpt"] == [f"box@{PUBLIC}", f"Box+tag@{PUBLIC}"]
    assert ("user", "relay") in named
    assert verify_signature(webhook["secret"], request)["spam"] == {
        "score": 2.5, "required_score": 15.0, "action": "no action",
        "symbols": [{"name": "R_ONE", "score": 2.0}, {"name": "R_TWO", "score": 0.5}]}


async def test_a_long_verdict_arrives_whole(settings, client, alice, receiver):
    """An answer of many symbols comes in many reads; every symbol reaches the payload."""
    symbols = {f"SYMBOL_{i:05d}": {"name": f"SYMBOL_{i:05d}", "score": 0.001, "description": "x" * 100}
               for i in range(5000)}
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    verdict = {"score": 5.0, "required_score": 15.0, "action": "add header", "symbols": symbols}
    async with FakeRspamd(verdict).serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url)):
            _queued(await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}")))
            (request,) = await receiver.wait_for(1)
    spam = verify_signature(webhook["secret"], request)["spam"]
    assert (spam["action"], len(spam["symbols"])) == ("add header", 5000)


async def test_a_bounce_is_checked_with_the_null_sender_and_no_user(settings, client, alice, receiver):
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with FakeRspamd().serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url)):
            _queued(await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}"), sender=""))
            await receiver.wait_for(1)
    ((_, headers, _),) = fake.requests
    named = {name.lower(): value for name, value in headers}
    assert named["from"] == "<>"
    assert "user" not in named


@pytest.mark.parametrize("action", ["soft reject", "greylist"])
async def test_rspamds_temporary_actions_are_451_under_reject(settings, client, alice, receiver, action):
    rejecting = await create_policy(client, alice, spam_action="reject")
    refusing = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url,
                                    smtp_security_policy_id=rejecting["id"])
    delivering = await create_webhook(client, alice, f"other@{PUBLIC}", receiver.url)
    verdict = {"score": 6.0, "required_score": 15.0, "action": action, "symbols": {}}
    async with FakeRspamd(verdict).serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url)):
            deferred = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}", subject="deferred"))
            delivered = await _send(settings, [f"other@{PUBLIC}"], _raw(f"other@{PUBLIC}", subject="delivered"))
            (request,) = await receiver.wait_for(1)
    assert deferred["data"] == SPAM_DEFERRED
    _queued(delivered)
    assert verify_signature(delivering["secret"], request)["spam"]["action"] == action
    (error,) = await _rejections(client, alice, refusing["id"])
    assert error.startswith("Message deferred by the spam filter, try again later: rspamd scored the message 6"), error


@pytest.mark.parametrize("status, answer", [(200, b"not json"), (200, b'{"action": "explode", "score": 1}'),
                                            (200, b'["a list"]'), (500, b'{"error": "internal"}')])
async def test_an_answer_that_is_no_verdict_counts_as_unavailable(settings, client, alice, receiver, status, answer):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)

    async def garbage(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/checkv2", garbage)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with running(_with(settings, rspamd_url=url)):
            sent = await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}"))
            (request,) = await receiver.wait_for(1)
    finally:
        await runner.cleanup()
    _queued(sent)
    assert verify_signature(webhook["secret"], request)["spam"]["action"] == "unavailable"


async def test_without_rspamd_the_payload_says_null(settings, client, alice, receiver):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        _queued(await _send(settings, [f"box@{PUBLIC}"], _gtube(f"box@{PUBLIC}")))
        (request,) = await receiver.wait_for(1)
    assert verify_signature(webhook["secret"], request)["spam"] is None


async def test_a_payload_template_sees_the_verdict(settings, client, alice, receiver):
    template = '{"verdict": {{ spam.action | tojson }}, "top": {{ spam.symbols[0].name | tojson }}}'
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, payload_template=template)
    async with FakeRspamd().serving() as fake:
        async with running(_with(settings, rspamd_url=fake.url)):
            _queued(await _send(settings, [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}")))
            (request,) = await receiver.wait_for(1)
    assert request.json() == {"verdict": "no action", "top": "R_ONE"}
