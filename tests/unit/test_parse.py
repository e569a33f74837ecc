"""Raw mail → default payload: fields, MIME shapes, broken input, bounds."""

from __future__ import annotations

import base64
import http.server
import json
import random
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import pytest

from conduit.mail import parse
from conduit.mail.parse import AuthResults, DkimResult, DmarcResult, Envelope, build_payload, template_context

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def payload_of(raw: bytes, *, rcpt_to: str = "hook@example.com", limit: int = 10 * 1024 * 1024, **overrides) -> dict:
    arguments = {
        "message_id": "msg_1",
        "received_at": RECEIVED,
        "envelope": Envelope(mail_from="sender@example.org", rcpt_to=(rcpt_to,), remote_ip="203.0.113.9",
                          helo="mx.example.org", tls=True, auth_user=None),
        "rcpt_to": rcpt_to,
        "webhook_id": "wh_1",
        "webhook_address": "hook@example.com",
        "auth": AuthResults(),
        "simulated": False,
        "max_inline_attachment_bytes": limit,
    }
    payload = build_payload(raw, **(arguments | overrides))
    # Always valid UTF-8 JSON: no lone surrogates from undecodable bytes anywhere.
    json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return payload


def crlf(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


SIMPLE = crlf("""\
From: "Alice Example" <alice@example.org>
To: hook@example.com, Bob <bob@example.com>
Cc: carol@example.com
Reply-To: replies@example.org
Subject: Hello there
Date: Wed, 01 May 2024 14:30:00 +0200
Message-ID: <abc.123@example.org>
X-Folded: first
 second

Hi!
""")


# -- fields --------------------------------------------------------------------------


def test_simple_message_fields():
    payload = payload_of(SIMPLE)
    assert payload["id"] == "msg_1"
    assert payload["event"] == "email.received"
    assert payload["received_at"] == "2024-05-01T12:00:00Z"
    assert payload["envelope"] == {
        "mail_from": "sender@example.org", "rcpt_to": ["hook@example.com"], "remote_ip": "203.0.113.9",
        "helo": "mx.example.org", "tls": True, "auth_user": None,
    }
    assert payload["message_id"] == "<abc.123@example.org>"
    assert payload["from"] == [{"address": "alice@example.org", "name": "Alice Example"}]
    assert payload["to"] == [{"address": "hook@example.com", "name": ""}, {"address": "bob@example.com", "name": "Bob"}]
    assert payload["cc"] == [{"address": "carol@example.com", "name": ""}]
    assert payload["reply_to"] == [{"address": "replies@example.org", "name": ""}]
    assert payload["subject"] == "Hello there"
    assert payload["date"] == "2024-05-01T12:30:00Z"
    assert payload["text"] == "Hi!\n"
    assert payload["text_from_html"] is False
    assert payload["html"] is None
    assert payload["reply_text"] == "Hi!"
    assert payload["mailbox_hash"] is None
    assert payload["attachments"] == []
    assert payload["webhook"] == {"id": "wh_1", "address": "hook@example.com"}
    assert payload["simulated"] is False
    assert payload["parse_warnings"] == []


def test_headers_are_listed_in_order_unfolded():
    payload = payload_of(SIMPLE)
    assert [h["name"] for h in payload["headers"]] == [
        "From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "X-Folded",
    ]
    assert payload["headers"][-1] == {"name": "X-Folded", "value": "first second"}


def test_repeated_headers_are_all_listed():
    raw = crlf("Received: from a\nReceived: from b\nTo: x@example.com\nTo: y@example.com\n\nbody")
    payload = payload_of(raw)
    assert [h["value"] for h in payload["headers"] if h["name"] == "Received"] == ["from a", "from b"]
    assert [a["address"] for a in payload["to"]] == ["x@example.com", "y@example.com"]


def test_auth_and_simulated_fields():
    auth = AuthResults(spf_result="pass", spf_domain="example.org",
                       dkim=(DkimResult("example.org", "pass"), DkimResult("other.net", "fail")),
                       dmarc=DmarcResult("pass", policy="reject", domain="example.org"))
    payload = payload_of(SIMPLE, auth=auth, simulated=True)
    assert payload["auth"] == {
        "spf": {"result": "pass", "domain": "example.org"},
        "dkim": [{"domain": "example.org", "result": "pass"}, {"domain": "other.net", "result": "fail"}],
        "dmarc": {"result": "pass", "policy": "reject", "domain": "example.org"},
    }
    assert payload["simulated"] is True
    assert payload_of(SIMPLE)["auth"] == {"spf": {"result": "none", "domain": None}, "dkim": [],
                                          "dmarc": {"result": "none", "policy": None, "domain": None}}


@pytest.mark.parametrize(
    ("rcpt", "tag"),
    [("hook+orders@example.com", "orders"), ("hook+a+b@example.com", "a+b"), ("hook@example.com", None),
     ("+tag@example.com", None), ("hook+@example.com", None), ("Hook+Tag@Example.com", "Tag")],
)
def test_mailbox_hash(rcpt, tag):
    assert payload_of(SIMPLE, rcpt_to=rcpt)["mailbox_hash"] == tag


def test_received_at_is_utc_with_z():
    assert payload_of(SIMPLE, received_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))[
        "received_at"] == "2024-05-01T12:00:00Z"
    assert payload_of(SIMPLE, received_at=datetime(2024, 5, 1, 12, 0))["received_at"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Date: Wed, 1 May 2024 10:00:00 -0000", "2024-05-01T10:00:00Z"),
        ("Date: 1 May 2024 10:00 EST", "2024-05-01T15:00:00Z"),
        ("Date: yesterday", None),
        ("Date: Wed, 1 May 99999 10:00:00 +0000", None),
        ("X-No-Date: 1", None),
    ],
)
def test_date(header, expected):
    payload = payload_of(crlf(f"{header}\n\nbody"))
    assert payload["date"] == expected
    if expected is None and header.startswith("Date"):
        assert "the Date header could not be parsed" in payload["parse_warnings"]


def _stdlib_date(value: str) -> str | Exception:
    try:
        moment = parsedate_to_datetime(value)
    except Exception as exc:  # noqa: BLE001 - the outcome compared
        return exc
    return parse._rfc3339(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _plain_date(value: str) -> str | Exception | None:
    try:
        moment = parse._plain_date(value)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None if moment is None else parse._rfc3339(moment)


def test_plain_dates_are_read_as_the_stdlib_reads_them():
    """parse._plain_date, the fast path for the usual Date form, against email.utils on 3,000
    generated dates, impossible ones included (they must fail as the stdlib's do)."""
    rng = random.Random(5322)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    read = 0
    for _ in range(3000):
        day_name = rng.choice(["", "Mon, ", "Sat, ", "Xyz, "])
        clock = f"{rng.randint(0, 24):02d}:{rng.randint(0, 59):02d}" + rng.choice(["", f":{rng.randint(0, 60):02d}"])
        zone = rng.choice(["GMT", *(sign + offset for sign in "+-" for offset in
                                    ["0000", "0100", "0530", "1200", "1400", "2359", "2400", "0160"])])
        value = (f"{day_name}{rng.randint(1, 32)} {rng.choice(months)} {rng.choice([1000, 1969, 2024, 2038, 9999])} "
                 f"{clock} {zone}{rng.choice(['', ' (UTC)', ' (Pacific Standard Time)'])}")
        fast, stdlib = _plain_date(value), _stdlib_date(value)
        assert fast is not None, value
        if isinstance(stdlib, Exception):
            assert isinstance(fast, ValueError), (value, fast, stdlib)
        else:
            assert fast == stdlib, value
            read += 1
    assert read > 1500
    for other in ["1 May 24 10:00 +0000", "1 MAY 2024 10:00 +0000", "Wed,  1 May 2024 10:00 +0000",
                  "1 May 2024 10:00 EST", "1 May 0999 10:00 +0000", "Wed 1 May 2024 10:00 +0000",
                  "1 May 2024 10:00 gmt", "1 May 2024 10:00 UT"]:
        assert parse._plain_date(other) is None, other  # left to the stdlib


def _as_parsed(msg) -> tuple:
    return (type(msg), msg._headers, msg.get_payload(), [type(d) for d in msg.defects], msg.get_unixfrom())


HEADER_BLOCKS = [
    b"Subject: hi\r\n", b"Subject: \r\n folded\r\n", b"Subject:\tx\r\n\tcontinued \r\n", b"A: 1\nB: 2",
    b"A: b\r\n \r\n", b"A: \r\n", b"A:b:c\r\n", b"A: b\x0bc\x0cd\x1ce\r\n", b"X-8bit: caf\xc3\xa9 \xff\r\n",
    b"A: 1\r\nA: 2\r\n  three\r\n\tfour\r\nB: 5\r\n",
    # the special cases, left to the stdlib
    b"X: a\rb\r\n", b" first continuation\r\nA: b\r\n", b":empty name\r\nA: b\r\n", b"From someone\r\nA: b\r\n",
    b"A: b\r\nFrom x\r\n", b"",
]


def test_header_blocks_are_read_as_the_stdlib_reads_them(monkeypatch):
    """parse._parse_header_block, the fast path for a part's header block, against the stdlib's
    parser on the blocks above and on every header block of every part of the payload corpus."""
    from tests.unit.test_payload_corpus import _built, _cases

    seen: list[bytes] = []
    fast = parse._parse_header_block
    monkeypatch.setattr(parse, "_parse_header_block", lambda block: seen.append(block) or fast(block))
    for case in _cases().values():
        _built(case())
    assert len(seen) > 300
    for block in [*HEADER_BLOCKS, *seen]:
        assert _as_parsed(fast(block)) == _as_parsed(parse._stdlib_header_block(block)), block[:300]


def test_encoded_words_are_decoded():
    raw = crlf("From: =?iso-8859-1?q?J=F6rg_M=FCller?= <jm@example.de>\n"
               "Subject: =?utf-8?b?R3LDvMOfZSDwn5iA?=\n\nbody")
    payload = payload_of(raw)
    assert payload["subject"] == "Grüße 😀"
    assert payload["from"] == [{"address": "jm@example.de", "name": "Jörg Müller"}]
    assert {"name": "Subject", "value": "Grüße 😀"} in payload["headers"]


def test_utf8_headers_smtputf8():
    raw = crlf("From: Jörg <jörg@exämple.de>\nSubject: Grüße\n\nbody".encode())
    payload = payload_of(raw)
    assert payload["subject"] == "Grüße"
    assert payload["from"] == [{"address": "jörg@exämple.de", "name": "Jörg"}]
    assert payload["parse_warnings"] == []


def test_non_utf8_8bit_header_is_replaced_and_noted():
    payload = payload_of(crlf(b"Subject: caf\xe9 \xff\n\nbody"))
    assert payload["subject"] == "caf\ufffd \ufffd"
    assert any("Subject" in w and "U+FFFD" in w for w in payload["parse_warnings"])


def test_group_and_empty_address_lists():
    payload = payload_of(crlf("To: undisclosed-recipients:;\nCc: Team: a@example.com, b@example.com;\n\nx"))
    assert payload["to"] == []
    assert [a["address"] for a in payload["cc"]] == ["a@example.com", "b@example.com"]


def test_missing_headers_give_nulls_and_empty_lists():
    payload = payload_of(b"\r\njust a body\r\n")
    assert (payload["subject"], payload["message_id"], payload["date"]) == (None, None, None)
    assert payload["from"] == payload["to"] == payload["cc"] == payload["reply_to"] == payload["headers"] == []
    assert payload["text"] == "just a body\n"


# -- MIME shapes ---------------------------------------------------------------------


def _rich_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "hook@example.com"
    message["Subject"] = "Report"
    message.set_content("Plain text, with ümlauts.\n")
    message.add_alternative("<p>HTML with <img src='cid:logo@example.org'></p>\n", subtype="html")
    html = message.get_payload()[1]
    html.add_related(b"\x89PNG fake image", maintype="image", subtype="png", cid="<logo@example.org>")
    message.add_attachment(b"%PDF-1.4 \x00\x01\x02 binary", maintype="application", subtype="pdf",
                           filename="Résumé 2024.pdf")
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    return message


def test_alternative_related_and_attachments():
    payload = payload_of(_rich_message().as_bytes(policy=policy.SMTP))
    assert payload["text"] == "Plain text, with ümlauts.\n"
    assert payload["html"] == "<p>HTML with <img src='cid:logo@example.org'></p>\n"
    by_name = {a["content_type"]: a for a in payload["attachments"]}
    assert set(by_name) == {"image/png", "application/pdf", "text/csv"}
    image = by_name["image/png"]
    assert (image["content_id"], image["filename"], image["disposition"]) == ("logo@example.org", None, "inline")
    assert base64.b64decode(image["content"]) == b"\x89PNG fake image"
    pdf = by_name["application/pdf"]
    assert (pdf["filename"], pdf["disposition"], pdf["size"]) == ("Résumé 2024.pdf", "attachment", 19)
    assert base64.b64decode(pdf["content"]) == b"%PDF-1.4 \x00\x01\x02 binary"
    assert base64.b64decode(by_name["text/csv"]["content"]).replace(b"\r\n", b"\n") == b"a,b\n1,2\n"
    assert all(a["content_omitted"] is False for a in payload["attachments"])
    assert payload["parse_warnings"] == []


def test_agrees_with_the_stdlib_parser_on_well_formed_mail():
    """The MIME splitting is ours; on valid mail it must give what the stdlib gives."""
    raw = _rich_message().as_bytes(policy=policy.SMTP)
    reference = BytesParser(policy=policy.default).parsebytes(raw)
    payload = payload_of(raw)
    assert payload["text"] == reference.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert payload["html"] == reference.get_body(("html",)).get_content().replace("\r\n", "\n")
    leaves = [part for part in reference.walk() if not part.is_multipart()][2:]  # after text and html
    assert [base64.b64decode(a["content"]) for a in payload["attachments"]] == [
        part.get_payload(decode=True) for part in leaves
    ]
    assert [a["filename"] for a in payload["attachments"]] == [part.get_filename() for part in leaves]


def test_attachment_names_rfc2231_and_rfc2047():
    raw = crlf("""\
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

body
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.txt

x
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="

y
--b--
""")
    assert [a["filename"] for a in payload_of(raw)["attachments"]] == ["€ rates.txt", "Résumé.pdf"]


def test_attached_message_is_passed_whole():
    inner = crlf("From: inner@example.com\nSubject: inner\n\ninner body\n")
    raw = crlf(b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nouter\n"
               b"--b\nContent-Type: message/rfc822\n\n") + inner + b"--b--\r\n"
    payload = payload_of(raw)
    assert payload["text"] == "outer"
    [attached] = payload["attachments"]
    assert attached["content_type"] == "message/rfc822"
    assert base64.b64decode(attached["content"]) == inner.removesuffix(b"\r\n")
    assert payload["subject"] is None  # the inner message's headers are not the message's


def test_digest_parts_default_to_message_rfc822():
    raw = crlf("Content-Type: multipart/digest; boundary=d\n\n"
               "--d\n\nSubject: one\n\n1\n--d\n\nSubject: two\n\n2\n--d--\n")
    payload = payload_of(raw)
    assert [a["content_type"] for a in payload["attachments"]] == ["message/rfc822", "message/rfc822"]


def test_second_text_part_becomes_an_attachment():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\nContent-Type: text/plain\n\nsecond\n"
               "--b\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--b--\n")
    payload = payload_of(raw)
    assert payload["text"] == "first"
    assert [(a["content_type"], base64.b64decode(a["content"])) for a in payload["attachments"]] == [
        ("text/plain", b"second"), ("text/calendar", b"BEGIN:VCALENDAR"),
    ]


def test_text_attachment_with_disposition_is_not_the_body():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
               "Content-Disposition: attachment; filename=notes.txt\n\nnotes\n--b--\n")
    payload = payload_of(raw)
    assert payload["text"] is None
    assert payload["attachments"][0]["filename"] == "notes.txt"


def test_preamble_and_epilogue_are_ignored():
    raw = crlf("Content-Type: multipart/alternative; boundary=\"a b\"\n\nThis is a preamble.\n--a b\n\n"
               "plain\n--a b\nContent-Type: text/html\n\n<b>html</b>\n--a b--\nepilogue\n")
    payload = payload_of(raw)
    assert (payload["text"], payload["html"]) == ("plain", "<b>html</b>")
    assert payload["parse_warnings"] == []


def test_quoted_printable_and_base64_bodies():
    raw = crlf("Content-Type: multipart/alternative; boundary=b\n\n"
               "--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
               "Gr=C3=BC=C3=9Fe, a long line that is soft=\n broken\n"
               "--b\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
               + base64.encodebytes("<p>Grüße</p>".encode()).decode() + "--b--\n")
    payload = payload_of(raw)
    assert payload["text"] == "Grüße, a long line that is soft broken"
    assert payload["html"] == "<p>Grüße</p>"


# -- attachment size limit -----------------------------------------------------------


def _with_attachments(*sizes: int) -> bytes:
    message = EmailMessage()
    message.set_content("see attached")
    for index, size in enumerate(sizes):
        message.add_attachment(bytes(size), maintype="application", subtype="octet-stream", filename=f"f{index}")
    return message.as_bytes()


def test_attachments_within_the_limit_are_inline():
    attachments = payload_of(_with_attachments(100, 200), limit=300)["attachments"]
    assert [(a["size"], a["content_omitted"], len(base64.b64decode(a["content"]))) for a in attachments] == [
        (100, False, 100), (200, False, 200),
    ]


def test_attachments_over_the_limit_are_listed_without_content():
    attachments = payload_of(_with_attachments(100, 201), limit=300)["attachments"]
    assert [(a["filename"], a["size"], a["content"], a["content_omitted"]) for a in attachments] == [
        ("f0", 100, None, True), ("f1", 201, None, True),
    ]


# -- broken input --------------------------------------------------------------------


def test_unknown_charset_is_decoded_as_utf8_and_noted():
    payload = payload_of(crlf("Content-Type: text/plain; charset=x-klingon\n\nGrüße".encode()))
    assert payload["text"] == "Grüße"
    assert any("x-klingon" in w for w in payload["parse_warnings"])


def test_mislabelled_utf8_is_decoded_without_loss():
    payload = payload_of(crlf("Content-Type: text/plain; charset=us-ascii\n\nGrüße".encode()))
    assert payload["text"] == "Grüße"


def test_undecodable_bytes_are_replaced_and_noted():
    payload = payload_of(crlf(b"Content-Type: text/plain; charset=utf-8\n\nbad \xff\xfe bytes"))
    assert payload["text"] == "bad \ufffd\ufffd bytes"
    assert any("U+FFFD" in w for w in payload["parse_warnings"])


def test_codec_that_is_not_a_text_encoding():
    payload = payload_of(crlf(b"Content-Type: text/plain; charset=zlib\n\nplain"))
    assert payload["text"] == "plain"


def test_multipart_without_boundary_is_text():
    payload = payload_of(crlf("Content-Type: multipart/mixed\n\nno parts here"))
    assert payload["text"] == "no parts here"
    assert any("no boundary" in w for w in payload["parse_warnings"])


def test_boundary_that_never_appears():
    payload = payload_of(crlf("Content-Type: multipart/mixed; boundary=zzz\n\n--other\n\nbody"))
    assert payload["text"] == "--other\n\nbody"
    assert any("never appears" in w for w in payload["parse_warnings"])


def test_missing_close_delimiter():
    payload = payload_of(crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n"
                              "Content-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGOD"))
    assert payload["text"] == "first"
    assert base64.b64decode(payload["attachments"][0]["content"]) == base64.b64decode("R0lGOD==")
    assert any("not closed" in w for w in payload["parse_warnings"])


def test_broken_base64_is_decoded_leniently():
    raw = crlf("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
               "aGVs*bG8g!d29y\nbGQ")
    payload = payload_of(raw)
    assert base64.b64decode(payload["attachments"][0]["content"]) == b"hello world"
    assert any("not base64" in w for w in payload["parse_warnings"])


def test_undecodable_mime_parameter_keeps_the_part():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n--b\nContent-Type: image/png\n"
               "Content-Disposition: attachment; filename*=utf-7''%2B2D3-\n\nPNG\n--b--\n")
    payload = payload_of(raw)
    assert payload["text"] == "body"
    [attachment] = payload["attachments"]
    assert (attachment["content_type"], attachment["disposition"]) == ("image/png", "attachment")
    assert base64.b64decode(attachment["content"]) == b"PNG"
    assert any("read as plain text" in w for w in payload["parse_warnings"])


@pytest.mark.parametrize("charset", ["unicode_escape", "raw_unicode_escape"])
def test_codecs_producing_lone_surrogates(charset):
    payload = payload_of(crlf(f"Content-Type: text/plain; charset={charset}\n\nA\\ud800B"))
    assert payload["text"] == "A\ufffdB"


def test_unknown_transfer_encoding_passes_raw():
    payload = payload_of(crlf("Content-Transfer-Encoding: x-magic\n\nraw body"))
    assert payload["text"] == "raw body"
    assert any("x-magic" in w for w in payload["parse_warnings"])


def test_no_blank_line_between_headers_and_body():
    payload = payload_of(crlf("Subject: hi\nthis line is no header\nmore"))
    assert payload["subject"] == "hi"
    assert payload["text"] == "this line is no header\nmore"
    assert any("no empty line" in w for w in payload["parse_warnings"])


def test_malformed_address_headers_do_not_fail():
    payload = payload_of(crlf("From: ((((((((((((((((((((((((((((((((((((" + "(" * 5000 + "\nTo: a@\nCc: <<<<\n\nx"))
    assert isinstance(payload["from"], list) and isinstance(payload["to"], list)


def test_very_long_header_is_passed_undecoded():
    value = "=?utf-8?q?a?= " * 3000
    payload = payload_of(crlf(f"Subject: {value}\n\nx"))
    assert payload["subject"] == value.strip()
    assert any("too long" in w for w in payload["parse_warnings"])


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\r\n\r\n", b"Subject: only headers", b"\x00\xff\xfe", b":\r\n:"])
def test_degenerate_input(raw):
    payload = payload_of(raw)
    assert payload["event"] == "email.received"


def test_deep_nesting_is_bounded():
    depth = 5000
    raw = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    raw += b"Content-Type: text/plain\r\n\r\ndeepest\r\n" + b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    payload = payload_of(raw)
    assert payload["text"] is not None
    assert any(f"deeper than {parse.MAX_DEPTH}" in w for w in payload["parse_warnings"])


def test_part_count_is_bounded():
    part = "--b\nContent-Type: image/gif\n\nx\n"
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n" + part * 2000 + "--b--\n")
    payload = payload_of(raw)
    assert len(payload["attachments"]) == parse.MAX_PARTS - 1
    assert any(f"more than {parse.MAX_PARTS}" in w for w in payload["parse_warnings"])


def test_random_mutations_never_raise():
    rng = random.Random(5)
    seeds = [SIMPLE, _rich_message().as_bytes()]
    pieces = [b"\r\n", b"\n", b":", b" ", b"--", b"=?utf-8?q?", b"?=", b"\xff", b"\x00", b"<", b"@", b"(", b'"',
              b"Content-Type: multipart/mixed; boundary=", b"Content-Transfer-Encoding: base64\r\n", b"charset=",
              b"message/rfc822", b"filename*=", b"'", b"%", b";", b"="]
    for _ in range(300):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 20)):
            position = rng.randint(0, len(raw))
            if rng.random() < 0.2:
                del raw[position : position + rng.randint(1, 50)]
            else:
                raw[position:position] = rng.choice(pieces)
        payload_of(bytes(raw))


# -- reply_text ----------------------------------------------------------------------


def test_reply_text_strips_quoted_history_and_signature():
    raw = crlf("""\
Content-Type: text/plain; charset=utf-8

Sounds good, see you then.

--
Alice
Sent from my phone

On Mon, Apr 29, 2024 at 10:00 AM Bob <bob@example.com> wrote:
> Shall we meet on Friday?
> - Bob
""")
    payload = payload_of(raw)
    assert payload["reply_text"] == "Sounds good, see you then."
    assert "Shall we meet" in payload["text"]


def test_reply_text_other_language():
    raw = crlf(b"Content-Type: text/plain; charset=utf-8\n\nDanke!\n\n"
               b"Am 29.04.2024 um 10:00 schrieb Bob <bob@example.com>:\n> Hallo\n")
    assert payload_of(raw)["reply_text"] == "Danke!"


def test_reply_text_keeps_lists():
    raw = crlf("\nPlan:\n- one\n- two\n\nOn Mon, Apr 29, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> x\n")
    assert payload_of(raw)["reply_text"] == "Plan:\n- one\n- two"


def test_reply_text_is_null_without_text():
    raw = crlf("Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=")
    payload = payload_of(raw)
    assert (payload["text"], payload["html"], payload["reply_text"]) == (None, None, None)
    assert payload["text_from_html"] is False


def test_reply_text_of_long_text_without_quotes_is_the_text():
    text = "line of a long message\r\n" * 5000
    payload = payload_of(b"\r\n" + text.encode())
    assert payload["reply_text"] == payload["text"] == text.replace("\r\n", "\n")


def test_reply_text_survives_blank_line_floods():
    payload = payload_of(b"\r\nhello" + b"\r\n" * 30000 + b"bye")
    assert payload["reply_text"].startswith("hello")


# -- line endings --------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_text_fields_end_lines_with_lf_whatever_the_message_uses(ending):
    body = ending.join(["Thanks!", "", "On Mon, 1 Jan 2024 at 10:00, Bob <bob@example.com> wrote:", "> hi", ""])
    html = ending.join(["<p>one</p>", "<pre>a", "b</pre>", ""])
    raw = ("Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           + body + "\r\n--b\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n--b--\r\n").encode()
    payload = payload_of(raw)
    assert payload["text"] == "Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Bob <bob@example.com> wrote:\n> hi\n"
    assert payload["html"] == "<p>one</p>\n<pre>a\nb</pre>\n"
    assert payload["reply_text"] == "Thanks!"


def test_mixed_line_endings_become_lf():
    payload = payload_of(b"\r\none\rtwo\r\nthree\nfour\r\r\nfive")
    assert payload["text"] == "one\ntwo\nthree\nfour\n\nfive"


# -- HTML-only mail --------------------------------------------------------------------

GMAIL_HTML = """\
<div dir="ltr">Hi,<br><br>Thanks for the quick answer! Friday works for me.<br><br>Alice</div>
<div style="display:none">preview text that mail clients hide</div>
<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Wed, May 1, 2024 at 4:02 PM Shop Support
&lt;<a href="mailto:support@example.com">support@example.com</a>&gt; wrote:<br></div>
<blockquote class="gmail_quote">Hello Alice,<br><br>your order ships tomorrow.</blockquote></div>
"""


def test_html_only_mail_gets_text_and_reply_text_from_the_html():
    payload = payload_of(crlf("Content-Type: text/html; charset=utf-8\n\n" + GMAIL_HTML))
    assert payload["text_from_html"] is True
    assert payload["html"] == GMAIL_HTML
    assert payload["text"] == (
        "Hi,\n\nThanks for the quick answer! Friday works for me.\n\nAlice\n\n"
        "On Wed, May 1, 2024 at 4:02 PM Shop Support <support@example.com> wrote:\n"
        "Hello Alice,\n\nyour order ships tomorrow.")
    assert payload["reply_text"] == "Hi,\n\nThanks for the quick answer! Friday works for me.\n\nAlice"
    assert payload["parse_warnings"] == []


def test_html_text_keeps_the_layout_of_blocks_lists_tables_and_pre():
    html = ("<h1>Order</h1><p>Your <b>order</b> &amp; receipt:</p><ul><li>one</li><li>two</li></ul>"
            "<table><tr><th>Item</th><th>Qty</th></tr><tr><td>Widget</td><td>2</td></tr></table>"
            "<pre>  keep\n    this</pre><script>alert(1)</script><style>p {color: red}</style>")
    payload = payload_of(crlf("Content-Type: text/html\n\n" + html))
    assert payload["text"] == ("Order\n\nYour order & receipt:\n\n  * one\n  * two\nItem  Qty\nWidget  2\n"
                               "  keep\n    this")


def test_mail_with_a_text_part_keeps_it_and_says_so():
    raw = crlf("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain\n"
               "--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n")
    payload = payload_of(raw)
    assert (payload["text"], payload["text_from_html"]) == ("plain", False)


def test_html_text_fetches_nothing():
    """Remote images, stylesheets, frames and a DTD point at a real server on loopback: making
    the text requests none of them."""
    requests: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name for the GET handler
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<!ENTITY x 'fetched'>")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        html = (f'<!DOCTYPE html SYSTEM "{base}/evil.dtd"><html><head><link rel="stylesheet" href="{base}/a.css">'
                f'</head><body><img src="{base}/pixel.gif" alt="pixel"><iframe src="{base}/frame"></iframe>'
                f'<object data="{base}/object"></object><p>visible &x;</p></body></html>')
        payload = payload_of(crlf("Content-Type: text/html\n\n" + html))
    finally:
        server.shutdown()
        server.server_close()
    assert payload["text"].startswith("visible")
    assert "fetched" not in payload["text"]
    assert requests == []


def test_huge_html_is_capped_with_a_warning():
    html = "<p>" + "word " * 300_000 + "</p><p>the end</p>"  # 1.5 million characters
    payload = payload_of(("Content-Type: text/html\r\n\r\n" + html).encode())
    assert payload["text_from_html"] is True
    assert payload["text"].startswith("word word")
    assert "the end" not in payload["text"]
    assert any("longer than" in w for w in payload["parse_warnings"])


def test_deeply_nested_html_keeps_what_comes_before_with_a_warning():
    html = "<p>before</p>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000
    payload = payload_of(("Content-Type: text/html\r\n\r\n" + html).encode())
    assert payload["text"] == "before"
    assert any("nested too deeply" in w for w in payload["parse_warnings"])


@pytest.mark.parametrize("html", [
    '<div style="padding-left: 100000em">' + "line<br>" * 2000,  # padding written on every line
    '<p style="margin-top: 100000em">x</p>' * 500,  # margins written as blank lines
    "<table><tr><td>" + "x" * 50_000 + "</td></tr>" + "<tr><td>y</td><td>z</td></tr>" * 2000 + "</table>",
    "<ul>" * 250 + "<li>x" * 5000,
], ids=["padding", "margin", "aligned-table", "nested-lists"])
def test_html_text_grows_no_faster_than_the_html(html):
    """Layout that would multiply the text (column alignment, indentation, CSS lengths) is
    bounded: the text is at most a few times as long as the HTML."""
    payload = payload_of(("Content-Type: text/html\r\n\r\n" + html).encode())
    assert payload["text_from_html"] is True
    assert 0 < len(payload["text"]) <= 8 * len(html)


def test_html_that_is_only_whitespace_or_comments_gives_empty_text():
    payload = payload_of(crlf("Content-Type: text/html\n\n  <!-- nothing -->  "))
    assert (payload["text"], payload["text_from_html"], payload["reply_text"]) == ("", True, "")


# -- template context and memory -----------------------------------------------------


def test_template_context_adds_raw():
    payload = payload_of(SIMPLE)
    context = template_context(payload, SIMPLE + b"\xff")
    assert context["raw"] == SIMPLE.decode() + "\ufffd"
    assert context["subject"] == "Hello there"
    assert "raw" not in payload


@pytest.mark.parametrize("shape", ["short_lines", "utf8_text", "base64_attachment"])
def test_25_mib_stays_within_a_few_times_its_size(shape):
    size = 25 * 1024 * 1024
    if shape == "short_lines":  # the stdlib's parser would need ~20 times the size here
        raw = b"Subject: big\r\n\r\n" + b"a\r\n" * (size // 3)
    elif shape == "utf8_text":  # the stdlib's parser would hold it as 2-byte characters
        line = "Grüße aus Köln, mit Umlauten: äöü.\r\n".encode()
        raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + line * (size // len(line))
    else:
        data = random.Random(1).randbytes(size * 3 // 4 - 1024)
        raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nsee attached\r\n--b\r\n"
               b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"--b--\r\n")
        del data
    arguments = {"message_id": "m", "received_at": RECEIVED, "envelope": Envelope("", ("a@example.com",)),
                     "rcpt_to": "a@example.com", "webhook_id": "w", "webhook_address": "a@example.com",
                     "auth": AuthResults(), "simulated": False, "max_inline_attachment_bytes": size}
    tracemalloc.start()
    try:
        payload = build_payload(raw, **arguments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert payload["text"] or payload["attachments"][0]["content"]
    assert peak < 4 * len(raw)  # on top of the raw message itself
