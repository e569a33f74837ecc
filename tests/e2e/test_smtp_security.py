"""SMTP security end to end: STARTTLS, SMTP AUTH, source IP, SPF and DKIM policies.

The real SMTP server and delivery worker (conduit.runtime.run) speak to real clients
(aiosmtplib in this loop, smtplib in a thread); STARTTLS uses a certificate from a trustme CA;
SPF and DKIM records are served by the real loopback DNS server (tests.support.dns_server),
with RSA keys made here and messages signed by dkimpy; webhooks are received by a real HTTP
receiver that verifies Standard Webhooks signatures.
"""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy as email_policy
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.factories import create_policy, create_webhook, user
from tests.support.conversation import _eventually, _in_smtp_session, _logs
from tests.support.mail_auth import DkimKey, TlsFiles
from tests.support.pipeline import free_port, running
from tests.support.receiver import verify_signature

PUBLIC = "in.example"
SENDER_HELO = "mta.sender.example"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles.create(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, dns_zone, tls_files: TlsFiles) -> dict:
    """TLS and the loopback DNS server for every test; a test changes more through
    ``@pytest.mark.parametrize("settings_overrides", [{...}], indirect=True)``."""
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3", "keep_raw_days": 1,
            "smtp_tls_cert": str(tls_files.cert), "smtp_tls_key": str(tls_files.key),
            "dns_servers": f"127.0.0.1:{dns_zone.port}", "dns_timeout": 2.0,
            **getattr(request, "param", {})}


# --- helpers ----------------------------------------------------------------------------

def _raw(to: str, subject: str = "Hello", sender: str = "ann@sender.example", body: str = "Hi there\n") -> bytes:
    """A message as a sending server transmits it (CRLF line endings)."""
    message = EmailMessage()
    message["From"] = f"Ann <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Jun 2025 10:00:00 +0000"
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@{sender.rpartition('@')[2]}>"
    message.set_content(body)
    return message.as_bytes(policy=email_policy.SMTP)


async def _reply(awaitable) -> tuple[int, str]:
    """(code, text) of an aiosmtplib command, whether the server accepted it or not."""
    try:
        response = await awaitable
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return response.code, response.message


@asynccontextmanager
async def _smtp(settings, tls: TlsFiles | None = None, helo: str = SENDER_HELO) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib session after EHLO; with ``tls``, after STARTTLS (verifying the
    certificate against the test CA) and a second EHLO."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.smtp_port, start_tls=False, timeout=30,
                           local_hostname=helo)
    await smtp.connect()
    try:
        await smtp.ehlo()
        if tls is not None:
            await smtp.starttls(tls_context=tls.client_context())
            await smtp.ehlo()
        yield smtp
    finally:
        if smtp.is_connected:
            await smtp.quit()


async def _transaction(smtp: aiosmtplib.SMTP, sender: str, rcpts: list[str], raw: bytes) -> dict:
    """MAIL, RCPT for each recipient, DATA if any was accepted: every reply as (code, text)."""
    await smtp.rset()
    mail = await _reply(smtp.mail(sender))
    rcpt = [await _reply(smtp.rcpt(address)) for address in rcpts]
    data = await _reply(smtp.data(raw)) if any(code == 250 for code, _ in rcpt) else None
    return {"mail": mail, "rcpt": rcpt, "data": data}


async def _send(settings, sender: str, rcpts: list[str], raw: bytes, **session) -> dict:
    async with _smtp(settings, **session) as smtp:
        return await _transaction(smtp, sender, rcpts, raw)


async def _at_least(count: int, awaitable) -> list | None:
    items = await awaitable
    return items if len(items) >= count else None


def _rejections(logs: list[dict]) -> list[str]:
    """The errors of the log's ``rejected`` entries, each checked for the refusal's shape."""
    rejected = [log for log in logs if log["status"] == "rejected"]
    for log in rejected:
        assert log["http_status"] == 0, log
    return [log["error"] for log in rejected]


def _queued_id(sent: dict) -> str:
    """Conduit's message id from the 250 answer to DATA of a ``_transaction``."""
    assert sent["data"] is not None and sent["data"][0] == 250, sent
    assert "queued as msg_" in sent["data"][1], sent
    return sent["data"][1].rsplit(" ", 1)[1]


def _by_subject(secret: str, requests) -> dict[str, dict]:
    payloads = [verify_signature(secret, request) for request in requests]
    return {payload["subject"]: payload for payload in payloads}


# --- STARTTLS ---------------------------------------------------------------------------

async def test_starttls_is_offered_and_auth_only_after_it(settings, client, alice, receiver, tls_files):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        async with _smtp(settings) as smtp:
            assert smtp.supports_extension("starttls")
            assert not smtp.supports_extension("auth")
            assert (await _reply(smtp.execute_command(b"AUTH", b"PLAIN", b"AHJlbGF5AHNlY3JldA==")))[0] == 538
            await smtp.starttls(tls_context=tls_files.client_context())  # verifies the trustme certificate
            await smtp.ehlo()
            assert not smtp.supports_extension("starttls")
            assert smtp.supports_extension("auth")
            assert {"PLAIN", "LOGIN"} <= {method.upper() for method in smtp.supported_auth_methods}
            over_tls = await _transaction(smtp, "ann@sender.example", [f"box@{PUBLIC}"],
                                          _raw(f"box@{PUBLIC}", subject="over tls"))
        in_clear = await _send(settings, "ann@sender.example", [f"box@{PUBLIC}"],
                               _raw(f"box@{PUBLIC}", subject="in clear"))
        requests = await receiver.wait_for(2)
    _queued_id(over_tls)
    _queued_id(in_clear)
    payloads = _by_subject(webhook["secret"], requests)
    assert payloads["over tls"]["envelope"]["tls"] is True
    assert payloads["in clear"]["envelope"]["tls"] is False
    assert payloads["over tls"]["envelope"]["auth_user"] is None


@pytest.mark.parametrize("settings_overrides", [{"smtp_auth_insecure": True}], indirect=True, ids=["auth_insecure"])
async def test_auth_insecure_offers_auth_without_tls(settings, client, alice, receiver):
    policy = await create_policy(client, alice, require_smtp_auth=True, smtp_credentials="relay:s3cret-relay-pw")
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    async with running(settings):
        async with _smtp(settings) as smtp:
            assert smtp.supports_extension("starttls") and smtp.supports_extension("auth")
            assert (await _reply(smtp.auth_plain("relay", "s3cret-relay-pw")))[0] == 235
            sent = await _transaction(smtp, "ann@sender.example", [f"box@{PUBLIC}"], _raw(f"box@{PUBLIC}"))
        (request,) = await receiver.wait_for(1)
    _queued_id(sent)
    envelope = verify_signature(webhook["secret"], request)["envelope"]
    assert (envelope["auth_user"], envelope["tls"]) == ("relay", False)


# --- SMTP AUTH --------------------------------------------------------------------------

CREDENTIALS = ("relay", "pass:word with spaces")


@pytest.fixture
async def auth_webhook(client, alice, receiver) -> dict:
    policy = await create_policy(client, alice, require_smtp_auth=True, smtp_credentials=":".join(CREDENTIALS))
    return await create_webhook(client, alice, f"auth@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])


async def test_auth_plain_and_login_with_the_policy_credentials(settings, client, alice, auth_webhook, receiver,
                                                                 tls_files):
    login, password = CREDENTIALS
    to = f"auth@{PUBLIC}"

    def with_smtplib_login(smtp: smtplib.SMTP):
        smtp.ehlo()
        smtp.starttls(context=tls_files.client_context())
        smtp.ehlo()
        assert "LOGIN" in smtp.esmtp_features["auth"].split()
        smtp.user, smtp.password = login, password
        auth = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        refused = smtp.sendmail("ann@sender.example", [to], _raw(to, subject="login"))
        return auth, refused

    async with running(settings):
        async with _smtp(settings, tls=tls_files) as smtp:
            plain_auth = await _reply(smtp.auth_plain(login, password))
            plain = await _transaction(smtp, "ann@sender.example", [to], _raw(to, subject="plain"))
        login_auth, login_refused = await _in_smtp_session(settings, with_smtplib_login, helo=SENDER_HELO)
        requests = await receiver.wait_for(2)
        logs = await _eventually(lambda: _at_least(2, _logs(client, alice, auth_webhook["id"], status="delivered")))
    assert plain_auth[0] == 235
    assert login_auth[0] == 235
    assert plain["rcpt"][0][0] == 250
    _queued_id(plain)
    assert login_refused == {}
    payloads = _by_subject(auth_webhook["secret"], requests)
    for subject in ("plain", "login"):
        envelope = payloads[subject]["envelope"]
        assert (envelope["auth_user"], envelope["tls"]) == ("relay", True), subject
    assert [log["http_status"] for log in logs] == [200, 200]


async def test_wrong_password_gets_535_and_no_auth_gets_530_at_rcpt(settings, client, alice, auth_webhook, receiver,
                                                                      tls_files):
    login, password = CREDENTIALS
    to = f"auth@{PUBLIC}"
    async with running(settings):
        async with _smtp(settings, tls=tls_files) as smtp:
            wrong_plain = await _reply(smtp.auth_plain(login, password + "x"))
            wrong_login = await _reply(smtp.auth_login(login, "nope"))
            after_failed_auth = await _transaction(smtp, "ann@sender.example", [to], _raw(to))
        without_auth = await _send(settings, "ann@sender.example", [to], _raw(to), tls=tls_files)
        in_clear = await _send(settings, "ann@sender.example", [to], _raw(to))
    assert wrong_plain[0] == 535 and wrong_login[0] == 535
    for sent in (after_failed_auth, without_auth, in_clear):
        (rcpt,) = sent["rcpt"]
        assert rcpt == (530, "5.7.0 Authentication required"), sent
        assert sent["data"] is None
    errors = _rejections(await _logs(client, alice, auth_webhook["id"]))
    assert len(errors) == 3
    assert all(error.startswith("Authentication required") for error in errors), errors
    assert all("did not authenticate" in error for error in errors), errors
    assert receiver.received == []


async def test_auth_as_the_user_of_another_policy_gets_530(settings, client, alice, auth_webhook, receiver, tls_files):
    """Credentials are per policy: another account's SMTP user, even one with the same user
    name, authenticates (235) but only reaches the webhooks of its own policy."""
    bob = await user(client)
    bobs = await create_policy(client, bob, require_smtp_auth=True, smtp_credentials="bobrelay:bobs-secret-pw")
    namesake = await create_policy(client, bob, require_smtp_auth=True, smtp_credentials="relay:bobs-other-secret")
    bob_hook = await create_webhook(client, bob, f"bob@{PUBLIC}", receiver.url, smtp_security_policy_id=bobs["id"])
    namesake_hook = await create_webhook(client, bob, f"bob2@{PUBLIC}", receiver.url,
                                         smtp_security_policy_id=namesake["id"])
    rcpts = {"bobrelay": [f"auth@{PUBLIC}", f"bob@{PUBLIC}"], "relay": [f"auth@{PUBLIC}", f"bob2@{PUBLIC}"]}
    passwords = {"bobrelay": "bobs-secret-pw", "relay": "bobs-other-secret"}
    sent = {}
    async with running(settings):
        for login, to in rcpts.items():
            async with _smtp(settings, tls=tls_files) as smtp:
                auth = await _reply(smtp.auth_plain(login, passwords[login]))
                assert auth[0] == 235, auth
                sent[login] = await _transaction(smtp, "bob@sender.example", to, _raw(to[1], subject=f"as {login}"))
        requests = await receiver.wait_for(2)
    for login in rcpts:
        assert sent[login]["rcpt"] == [(530, "5.7.0 Authentication required"), (250, "2.1.5 Recipient ok")], login
        _queued_id(sent[login])
    payloads = {request.json()["webhook"]["address"]: request for request in requests}
    assert verify_signature(bob_hook["secret"], payloads[f"bob@{PUBLIC}"])["envelope"]["auth_user"] == "bobrelay"
    assert verify_signature(namesake_hook["secret"], payloads[f"bob2@{PUBLIC}"])["envelope"]["auth_user"] == "relay"
    assert sorted(_rejections(await _logs(client, alice, auth_webhook["id"]))) == [
        "Authentication required: SMTP authentication as 'relay' failed",
        "Authentication required: authenticated as 'bobrelay', but the policy requires 'relay'",
    ]
    assert _rejections(await _logs(client, bob, bob_hook["id"])) == []


# --- source IP --------------------------------------------------------------------------

async def test_source_ip_policy(settings, client, alice, receiver):
    elsewhere = await create_policy(client, alice, allowed_source_ips="10.0.0.0/8")
    loopback = await create_policy(client, alice, allowed_source_ips="127.0.0.0/8")
    denied = await create_webhook(client, alice, f"denied@{PUBLIC}", receiver.url,
                                  smtp_security_policy_id=elsewhere["id"])
    allowed = await create_webhook(client, alice, f"allowed@{PUBLIC}", receiver.url,
                                   smtp_security_policy_id=loopback["id"])
    async with running(settings):
        sent = await _send(settings, "ann@sender.example", [f"denied@{PUBLIC}", f"allowed@{PUBLIC}"],
                           _raw(f"allowed@{PUBLIC}"))
        (request,) = await receiver.wait_for(1)
    assert sent["rcpt"][0][0] == 550 and sent["rcpt"][0][1].startswith("5.7.1 ")
    assert sent["rcpt"][1][0] == 250
    _queued_id(sent)
    assert verify_signature(allowed["secret"], request)["webhook"]["address"] == f"allowed@{PUBLIC}"
    (error,) = _rejections(await _logs(client, alice, denied["id"]))
    assert error.startswith("source IP not allowed") and "127.0.0.1" in error
    assert _rejections(await _logs(client, alice, allowed["id"])) == []


# --- SPF --------------------------------------------------------------------------------

async def test_spf_pass_is_accepted_and_reported(settings, client, alice, receiver, dns_zone):
    dns_zone.add("spf-ok.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.add("mta.spf-ok.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    policy = await create_policy(client, alice, require_spf=True)
    webhook = await create_webhook(client, alice, f"spf@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    to = f"spf@{PUBLIC}"
    async with running(settings):
        sent = await _send(settings, "ann@spf-ok.example", [to],
                           _raw(to, subject="mail from", sender="ann@spf-ok.example"))
        # A null sender (a bounce) is checked against its HELO name (RFC 7208 2.4).
        bounce = await _send(settings, "", [to], _raw(to, subject="bounce", sender="mailer-daemon@spf-ok.example"),
                             helo="mta.spf-ok.example")
        _queued_id(sent)
        _queued_id(bounce)
        requests = await receiver.wait_for(2)
    payloads = _by_subject(webhook["secret"], requests)
    assert payloads["mail from"]["auth"]["spf"] == {"result": "pass", "domain": "spf-ok.example"}
    assert payloads["bounce"]["auth"]["spf"] == {"result": "pass", "domain": "mta.spf-ok.example"}
    assert payloads["bounce"]["envelope"]["mail_from"] == ""


async def test_spf_refusals(settings, client, alice, receiver, dns_zone):
    dns_zone.add("spf-ok.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.add("spf-fail.example", "TXT", "v=spf1 -all")
    dns_zone.add("spf-none.example", "MX", "10 mx.spf-none.example")  # exists, no SPF record
    dns_zone.add("spf-broken.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.set_behaviour("spf-broken.example", "servfail")
    strict = await create_policy(client, alice, require_spf=True)
    restricted = await create_policy(client, alice, require_spf=True, allowed_spf_domains="other.example")
    spf_hook = await create_webhook(client, alice, f"spf@{PUBLIC}", receiver.url, smtp_security_policy_id=strict["id"])
    other_hook = await create_webhook(client, alice, f"other@{PUBLIC}", receiver.url,
                                      smtp_security_policy_id=restricted["id"])
    cases = [  # sender, recipient, expected RCPT reply
        ("ann@spf-fail.example", spf_hook, (550, "5.7.23 SPF check failed")),
        ("ann@spf-none.example", spf_hook, (550, "5.7.23 SPF check failed")),
        ("ann@no-such-domain.example", spf_hook, (550, "5.7.23 SPF check failed")),
        ("ann@spf-ok.example", other_hook, (550, "5.7.23 SPF check failed")),
        ("ann@spf-broken.example", spf_hook, (451, "4.7.24 SPF temporary error, try again later")),
    ]
    async with running(settings):
        async with _smtp(settings) as smtp:
            replies = [
                (await _transaction(smtp, sender, [hook["address"]], _raw(hook["address"], sender=sender)))["rcpt"][0]
                for sender, hook, _ in cases]
    assert replies == [expected for _, _, expected in cases]
    spf_errors = _rejections(await _logs(client, alice, spf_hook["id"]))
    other_errors = _rejections(await _logs(client, alice, other_hook["id"]))
    assert len(spf_errors) == 4 and len(other_errors) == 1
    assert all(error.startswith("SPF") for error in spf_errors + other_errors), (spf_errors, other_errors)
    joined = "\n".join(spf_errors)
    assert "spf-fail.example is 'fail'" in joined
    assert "spf-none.example is 'none'" in joined
    assert "no-such-domain.example is 'none'" in joined
    assert "spf-broken.example had a temporary DNS error" in joined
    assert "spf-ok.example, which is not among the allowed SPF domains" in other_errors[0]
    assert receiver.received == []


# --- DKIM -------------------------------------------------------------------------------

@pytest.fixture
def signer(dns_zone) -> DkimKey:
    key = DkimKey("signer.example")
    key.publish(dns_zone)
    return key


@pytest.fixture
def stranger(dns_zone) -> DkimKey:
    key = DkimKey("stranger.example", selector="s2024")
    key.publish(dns_zone)
    return key


async def _dkim_policy(client, owner) -> dict:
    return await create_policy(client, owner, require_dkim=True, allowed_dkim_domains="signer.example")


async def test_dkim_signature_from_an_allowed_domain_is_accepted(settings, client, alice, receiver, signer):
    policy = await _dkim_policy(client, alice)
    webhook = await create_webhook(client, alice, f"dkim@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    to = f"dkim@{PUBLIC}"
    async with running(settings):
        sent = await _send(settings, "ann@signer.example", [to], signer.sign(_raw(to, sender="ann@signer.example")))
        (request,) = await receiver.wait_for(1)
    _queued_id(sent)
    payload = verify_signature(webhook["secret"], request)
    assert payload["auth"]["dkim"] == [{"domain": "signer.example", "result": "pass"}]
    assert payload["text"].strip() == "Hi there"


async def test_dkim_refusals(settings, client, alice, receiver, signer, stranger):
    policy = await _dkim_policy(client, alice)
    webhook = await create_webhook(client, alice, f"dkim@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    to = f"dkim@{PUBLIC}"
    tampered = signer.sign(_raw(to, sender="ann@signer.example", body="Pay 10 EUR\n")).replace(b"Pay 10", b"Pay 99")
    messages = {
        "unsigned": _raw(to, sender="ann@signer.example"),
        "other domain": stranger.sign(_raw(to, sender="ann@stranger.example")),
        "tampered": tampered,
    }
    async with running(settings):
        async with _smtp(settings) as smtp:
            data = {name: (await _transaction(smtp, "ann@signer.example", [to], raw))["data"]
                    for name, raw in messages.items()}
    refusal = (550, "5.7.20 no valid DKIM signature from an allowed domain")
    assert data == dict.fromkeys(messages, refusal)
    logs = await _logs(client, alice, webhook["id"])
    errors = _rejections(logs)
    assert len(errors) == len(logs) == 3
    assert all(error.startswith("no valid DKIM signature from an allowed domain") for error in errors), errors
    joined = "\n".join(errors)
    assert "the message has no DKIM signature" in joined
    assert "stranger.example, none of which is among the allowed DKIM domains" in joined
    assert "no DKIM signature verified (signed by signer.example)" in joined
    assert receiver.received == []


async def test_recipients_with_different_dkim_outcomes(settings, client, alice, receiver, signer, stranger):
    policy = await _dkim_policy(client, alice)
    strict_url, open_url = receiver.url.replace("/hook", "/strict"), receiver.url.replace("/hook", "/open")
    strict = await create_webhook(client, alice, f"strict@{PUBLIC}", strict_url, smtp_security_policy_id=policy["id"])
    open_hook = await create_webhook(client, alice, f"open@{PUBLIC}", open_url)
    rcpts = [f"strict@{PUBLIC}", f"open@{PUBLIC}"]
    async with running(settings):
        sent = await _send(settings, "ann@stranger.example", rcpts,
                           stranger.sign(_raw(", ".join(rcpts), subject="from stranger",
                                              sender="ann@stranger.example")))
        await receiver.wait_for(1)
        # Then a message the strict webhook accepts: once it arrived, the first had every chance to.
        sentinel = await _send(settings, "ann@signer.example", [f"strict@{PUBLIC}"],
                               signer.sign(_raw(f"strict@{PUBLIC}", subject="sentinel", sender="ann@signer.example")))
        requests = await receiver.wait_for(2)
    assert [code for code, _ in sent["rcpt"]] == [250, 250]
    message_id = _queued_id(sent)
    _queued_id(sentinel)
    assert len(requests) == 2
    by_path = {request.path: request for request in requests}
    assert verify_signature(open_hook["secret"], by_path["/open"])["subject"] == "from stranger"
    assert verify_signature(strict["secret"], by_path["/strict"])["subject"] == "sentinel"
    strict_logs = await _eventually(lambda: _logs(client, alice, strict["id"], status="delivered"))
    assert len(strict_logs) == 1
    rejected = [log for log in await _logs(client, alice, strict["id"]) if log["status"] == "rejected"]
    assert [(log["http_status"], log["smtp_message_id"]) for log in rejected] == [(0, message_id)]
    assert rejected[0]["error"].startswith("no valid DKIM signature from an allowed domain")


async def test_data_is_refused_when_no_recipient_passes_dkim(settings, client, alice, receiver, signer):
    policy = await _dkim_policy(client, alice)
    first = await create_webhook(client, alice, f"one@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    second = await create_webhook(client, alice, f"two@{PUBLIC}", receiver.url, smtp_security_policy_id=policy["id"])
    rcpts = [f"one@{PUBLIC}", f"two@{PUBLIC}"]
    async with running(settings):
        sent = await _send(settings, "ann@signer.example", rcpts, _raw(", ".join(rcpts), sender="ann@signer.example"))
    assert [code for code, _ in sent["rcpt"]] == [250, 250]
    assert sent["data"] == (550, "5.7.20 no valid DKIM signature from an allowed domain")
    for webhook in (first, second):
        (error,) = _rejections(await _logs(client, alice, webhook["id"]))
        assert "the message has no DKIM signature" in error
    assert receiver.received == []


# --- results without a policy -----------------------------------------------------------

@pytest.mark.parametrize("settings_overrides", [{"inbound_auth_checks": True}], indirect=True,
                         ids=["inbound_auth_checks"])
async def test_inbound_auth_checks_report_spf_and_dkim_without_a_policy(settings, client, alice, receiver, dns_zone,
                                                                        signer):
    dns_zone.add("signer.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.add("forged.example", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    to = f"box@{PUBLIC}"
    tampered = signer.sign(_raw(to, subject="forged", sender="ann@forged.example", body="Pay 10 EUR\n"))
    async with running(settings):
        good = await _send(settings, "ann@signer.example", [to], signer.sign(_raw(to, subject="genuine",
                                                                                    sender="ann@signer.example")))
        bad = await _send(settings, "ann@forged.example", [to], tampered.replace(b"Pay 10", b"Pay 99"))
        requests = await receiver.wait_for(2)
    _queued_id(good)
    _queued_id(bad)  # without a policy the results inform, they do not refuse
    payloads = _by_subject(webhook["secret"], requests)
    assert payloads["genuine"]["auth"]["spf"] == {"result": "pass", "domain": "signer.example"}
    assert payloads["genuine"]["auth"]["dkim"] == [{"domain": "signer.example", "result": "pass"}]
    assert payloads["forged"]["auth"]["spf"] == {"result": "fail", "domain": "forged.example"}
    assert payloads["forged"]["auth"]["dkim"] == [{"domain": "signer.example", "result": "fail"}]

    assert payloads["genuine"]["auth"]["dmarc"] == {"result": "none", "policy": None, "domain": None}


@pytest.mark.parametrize("settings_overrides", [{"inbound_auth_checks": True}], indirect=True,
                         ids=["inbound_auth_checks"])
async def test_inbound_auth_checks_report_dmarc(settings, client, alice, receiver, dns_zone):
    """DMARC through the SMTP server: the record of the organizational domain under a two-label
    public suffix, ``sp=`` for a subdomain, relaxed SPF alignment of sibling subdomains."""
    dns_zone.add("bounce.example.co.uk", "TXT", "v=spf1 include:_spf.example.co.uk -all")
    dns_zone.add("_spf.example.co.uk", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.add("_dmarc.example.co.uk", "TXT", "v=DMARC1; p=quarantine; sp=reject; rua=mailto:d@example.co.uk")
    signer = DkimKey("example.co.uk")
    signer.publish(dns_zone)
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    to = f"box@{PUBLIC}"
    async with running(settings):
        aligned = await _send(settings, "bounce@bounce.example.co.uk", [to],
                              _raw(to, subject="aligned", sender="news@mail.example.co.uk"))
        signed = await _send(settings, "ann@elsewhere.example", [to],
                             signer.sign(_raw(to, subject="signed", sender="ann@example.co.uk")))
        forged = await _send(settings, "ann@elsewhere.example", [to],
                             _raw(to, subject="forged", sender="ceo@example.co.uk"))
        requests = await receiver.wait_for(3)
    for sent in (aligned, signed, forged):
        _queued_id(sent)  # DMARC informs the webhook; it never refuses mail
    payloads = _by_subject(webhook["secret"], requests)
    assert payloads["aligned"]["auth"]["spf"] == {"result": "pass", "domain": "bounce.example.co.uk"}
    assert payloads["aligned"]["auth"]["dmarc"] == {"result": "pass", "policy": "reject", "domain": "example.co.uk"}
    assert payloads["signed"]["auth"]["dmarc"] == {"result": "pass", "policy": "quarantine",
                                                   "domain": "example.co.uk"}
    assert payloads["forged"]["auth"]["dmarc"] == {"result": "fail", "policy": "quarantine",
                                                   "domain": "example.co.uk"}
