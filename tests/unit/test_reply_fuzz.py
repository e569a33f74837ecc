"""Hostile text and HTML: reply_text and build_payload finish in time linear in the input.

Each input here, up to ``MAX_INPUT`` characters, must finish within ``BUDGET_SECONDS`` of CPU
time. The bound exists to catch super-linear behaviour (a backtracking regular expression, a
loop that rescans the text for each line), which on inputs of this size takes minutes (as backtracking
patterns, mail-parser-reply's in Python's re, do on ``ATTACKS``). It does not measure speed:
linear work on these inputs takes a small fraction of the budget, which is generous so that a
busy machine does not fail it. The inputs are long runs of what the patterns look for ("On ",
"> ", "From: ", "--", disclaimer words, blank lines, tags), so that each pattern is tried, and
fails or succeeds late, as often as possible.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conduit.mail.parse import AuthResults, Envelope, build_payload
from conduit.mail.reply import reply_text

BUDGET_SECONDS = 1.0
MAX_INPUT = 200_000

ATTACKS = {  # what takes mail-parser-reply's patterns (Python's re) seconds to minutes
    "op-run": "Op " + "a " * 16000 + "\n:",
    "on-run": "On " + "a " * 16000 + "\n:",
    "on-wrote-run": "On " + "a " * 16000 + "wrote\n:",
    "quoted-on-run": "> On " + "a " * 16000 + "\n:",
    "dne-run": "Dne " + "a " * 16000 + "\n:",
    "quote-lines": "> a\n" * 50000,
    "blank-lines": "x" + "\n" * 200000 + "y",
    "on-lines": "On \n" * 50000,
    "on-on-lines": "On On a wrote:\n" * 14000,
    "from-lines": "From: a\n" * 25000,
    "dash-lines": "--\n" * 66000,
    "separator-lines": ("x\n\n" + "_" * 40 + "\n") * 4500,
    "original-message-lines": "-----Original Message-----\n" * 7000,
    "disclaimer-run": "CAUTION: " + "mail " * 38000,
    "spaces-then-colon": " " * 199_000 + "\n:",
}

PIECES = [
    "On ", "On On ", "Am ", "Le ", "El ", "Op ", "Dne ", "Il ", "Dnia ", "Den ", "> ", ">", ">> ", "From: ", "Sent: ",
    "*From:* ", "Von: ", "De : ", "Data: ", "-----", "----- Original Message -----", "-- ", "--", "__", "_" * 32,
    "Sent from my ", "Best regards", "Tak", "/", "CAUTION: ", "Disclaimer: ", "mail ", "e-mail", "wrote:", "schrieb",
    "a écrit", "escribió:", "写道：", "2025年3月3日 ", "님이 작성하였습니다:",
    "\n", "\n\n", "\r\n", "\r", " ", "\t", "\xa0",
    "a ", "x", "é", "東", "😀", ":", "<", ".",
]
HTML_PIECES = [
    "<div>", "</div>", "<table><tr><td>", "<td>", "</td>", "<tr>", "</table>", "<ul><li>", "<li>", "<ol>", "<br>",
    "<p>", '<p style="padding-left:99999em;margin-top:99999em">', '<div style="display:none">', "<pre>", "</pre>",
    "<blockquote>", "&amp;", "&#x1F600;", "<!--", "-->", "<script>", "<b>", "<span>", "x", "word ", "\n", "\r\n",
]


def _runs(pieces: list[str]) -> st.SearchStrategy[str]:
    """Text made of up to five runs, each a piece (or two) repeated up to a size bound."""
    run = st.tuples(st.lists(st.sampled_from(pieces), min_size=1, max_size=2).map("".join),
                    st.integers(min_value=1, max_value=MAX_INPUT))
    return st.lists(run, min_size=1, max_size=5).map(_expand)


def _expand(runs: list[tuple[str, int]]) -> str:
    budget = MAX_INPUT
    parts = []
    for unit, wanted in runs:
        count = min(wanted, budget // len(unit))
        parts.append(unit * count)
        budget -= len(unit) * count
    return "".join(parts)


def _cpu_seconds(call) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])


@pytest.mark.parametrize("text", ATTACKS.values(), ids=ATTACKS.keys())
def test_known_attacks_finish_in_time(text):
    result = []
    assert _cpu_seconds(lambda: result.append(reply_text(text))) < BUDGET_SECONDS
    reply, extracted = result[0]
    assert extracted and isinstance(reply, str) and len(reply) <= len(text)


@FUZZ
@given(_runs(PIECES))
@example(ATTACKS["op-run"])
@example(ATTACKS["on-wrote-run"])
@example("x" * MAX_INPUT)
def test_reply_text_finishes_in_time_on_hostile_text(text):
    result = []
    assert _cpu_seconds(lambda: result.append(reply_text(text))) < BUDGET_SECONDS
    reply, extracted = result[0]
    assert extracted
    assert isinstance(reply, str) and len(reply) <= len(text)
    assert reply is text or reply == reply.strip()


def _payload(content_type: str, body: str) -> dict:
    raw = f"From: a@example.org\r\nContent-Type: {content_type}; charset=utf-8\r\n\r\n".encode() + body.encode()
    return build_payload(raw, message_id="msg_1", received_at=datetime(2024, 5, 1, tzinfo=UTC),
                         envelope=Envelope(mail_from="a@example.org", rcpt_to=("hook@example.com",)),
                         rcpt_to="hook@example.com", webhook_id="wh_1", webhook_address="hook@example.com",
                         auth=AuthResults(), simulated=False, max_inline_attachment_bytes=65536)


def _check_payload(payload: dict) -> None:
    json.dumps(payload, ensure_ascii=False).encode()  # valid UTF-8 JSON
    for field in ("text", "html", "reply_text"):
        assert payload[field] is None or "\r" not in payload[field]


@FUZZ
@given(_runs(PIECES))
@example(ATTACKS["op-run"])
@example(ATTACKS["quote-lines"])
def test_build_payload_finishes_in_time_on_hostile_text(text):
    payloads = []
    assert _cpu_seconds(lambda: payloads.append(_payload("text/plain", text))) < BUDGET_SECONDS
    _check_payload(payloads[0])
    assert payloads[0]["text_from_html"] is False


@settings(FUZZ, max_examples=25)
@given(_runs(HTML_PIECES))
@example("<div>" * 100_000)
@example("<table><tr><td>" + "x" * 50_000 + "</td></tr>" + "<tr><td>y</td><td>z</td></tr>" * 5000)
def test_build_payload_finishes_in_time_on_hostile_html(html):
    payloads = []
    assert _cpu_seconds(lambda: payloads.append(_payload("text/html", html))) < BUDGET_SECONDS
    payload = payloads[0]
    _check_payload(payload)
    assert payload["text_from_html"] is True
    assert len(payload["text"]) <= 8 * len(html) + 1
