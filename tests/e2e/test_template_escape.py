"""Hostile payload templates, end to end: saved through the API, then run by the real worker on real
mail. Each one must fail its own delivery attempt with a logged error (visible in the webhook's
delivery log), in bounded time and memory, sending nothing, while the worker goes on delivering
everyone else's mail. (The sandbox rules themselves are unit-tested in tests/unit/test_templates.py.)"""

from __future__ import annotations

import resource
import time

import pytest

from tests.factories import assert_error, create_webhook
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import verify_signature

PUBLIC = "in.example"

# (template, what the logged error says). All compile, so the API stores them: the sandbox
# and the bounds act when the worker renders.
HOSTILE = {
    "mro": ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
    "globals": ("{{ cycler.__init__.__globals__ }}", "access to attribute '__init__'"),
    "self-globals": ("{{ self.__init__.__globals__ }}", "access to attribute '__init__'"),
    "huge-loop": ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
    "silent-loop": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                    "exceeded its time budget of 2 s"),
    "recursion": ("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "RecursionError"),
    "mul-bomb": ("{{ 'x' * 10**9 }}", "the result of * is too large"),
    "output-bomb": ("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", "output is larger than 1048576"),
    "pad-bomb": ("{{ 'x'.ljust(10**9) }}", "ljust width above 1000"),
    "join-bomb": ("{{ (['x' * 1000000] * 1000)|join }}", "the result of join is too large"),
    "lipsum-hang": ("{{ lipsum(10**6) }}", "lipsum is limited"),
    "center-bomb": ("{{ 'x'|center(10**9) }}", "center width above 1000"),
    "indent-bomb": ("{{ 'a\\nb'|indent(10**9) }}", "indent width above 1000"),
    "replace-bomb": ("{{ ('a' * 1000000)|replace('a', 'a' * 1000) }}", "the result of replace is too large"),
    "translate-bomb": ("{{ ('a' * 1000000).translate({97: 'x' * 1000}) }}", "the result of translate is too large"),
    "tab-bomb": ("{{ ('\\t' * 1000000).expandtabs(1000) }}", "the result of expandtabs is too large"),
    "batch-bomb": ("{{ [1]|batch(10**9, 0)|list }}", "batch size above 100000"),
    "slice-hang": ("{{ [1]|slice(10**9)|list }}", "number of slices above 100000"),
}


@pytest.fixture
def settings_overrides() -> dict:
    # One attempt per job: a failed render is final, so the log settles at once.
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0"}


async def test_hostile_templates_are_stored_as_written_and_an_oversized_one_is_422(client, alice, receiver):
    started = time.monotonic()
    for name, (template, _) in HOSTILE.items():
        hook = await create_webhook(client, alice, f"{name}@{PUBLIC}", receiver.url, payload_template=template)
        assert hook["payload_template"] == template
    assert time.monotonic() - started < 10  # saving never evaluates a template (no constant folding)
    padded = HOSTILE["mro"][0] + " " * 64 * 1024
    response = await client.post("/webhooks", headers=alice.headers, json={
        "address": f"big@{PUBLIC}", "target_url": receiver.url, "payload_template": padded})
    assert "payload_template is larger than 64 KiB" in assert_error(response, 422)["error"]


async def test_hostile_templates_fail_their_delivery_safely_and_other_mail_is_delivered(
        settings, client, alice, receiver):
    hooks = {name: await create_webhook(client, alice, f"{name}@{PUBLIC}", receiver.url, payload_template=template)
             for name, (template, _) in HOSTILE.items()}
    healthy = await create_webhook(client, alice, f"healthy@{PUBLIC}", receiver.url)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    async with running(settings):
        # One message for every hostile webhook and the healthy one, then another for the healthy one.
        everyone = [h["address"] for h in hooks.values()] + [healthy["address"]]
        await _send(settings, _mail(f"healthy@{PUBLIC}", subject="together"), rcpts=everyone)
        await _send(settings, _mail(f"healthy@{PUBLIC}", subject="after"))
        delivered = await receiver.wait_for(2)
        logs = {name: await _eventually(lambda h=hook: _logs(client, alice, h["id"]), timeout=30)
                for name, hook in hooks.items()}
    elapsed = time.monotonic() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024

    assert sorted(verify_signature(healthy["secret"], r)["subject"] for r in delivered) == ["after", "together"]
    assert len(receiver.received) == 2  # nothing from a hostile webhook was sent
    failures = []
    for name, (_, reason) in HOSTILE.items():
        (log,) = logs[name]
        if not (log["status"] == "failed" and log["http_status"] == 0 and log["duration_ms"] < 10_000
                and log["error"].startswith("payload could not be rendered: payload_template")
                and reason in log["error"]):
            failures.append(f"{name}: {log}")
    assert failures == []
    # Generous bounds that prove "does not hang, does not allocate gigabytes" (the deadline is 2 s).
    assert elapsed < 30
    assert grown_mib < 300, f"peak memory grew by {grown_mib:.0f} MiB"
