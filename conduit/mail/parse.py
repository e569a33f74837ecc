"""Raw RFC 5322 bytes → the default webhook payload, a plain dict ready for ``json.dumps``.

Why so defensive: the mail comes from anyone on the internet and has already been
accepted with ``250``, so parsing must never fail a delivery. Broken MIME, unknown
charsets, raw 8-bit headers and absurd nesting all produce a payload; whatever could
not be decoded is passed on with U+FFFD replacements and noted in ``parse_warnings``.
Header blocks are parsed by the stdlib (``email.policy.default``); the MIME tree is
split here on the raw bytes, because the stdlib's whole-message parser costs many
times the message size in memory (see "parsing" below). Nesting depth, part count
and the header text given to the (slow) structured header parser are bounded.
That parser is also spared where it cannot change the result: plain address lists
(``Name <a@b>``) are read with a regular expression, each header of a part is parsed
once, and the header objects of short values are reused across messages. A large
message still takes long to parse, and the mail is untrusted: ``build_payload`` runs in a
renderer process (``conduit.isolation``), never on an event loop.
tests/unit/test_payload_corpus.py holds the payloads of a corpus of messages fixed.

Payload fields (the README documents the payload from this table):

=====================  ============================================================
``id``                 Conduit's id of the message (the one in the ``250`` reply).
``event``              Always ``"email.received"``.
``received_at``        When Conduit accepted the message, RFC 3339 UTC (``...Z``).
``envelope``           The SMTP envelope: ``mail_from`` ("" for the null sender of
                       bounces), ``rcpt_to`` (list), ``remote_ip``, ``helo``, ``tls``
                       (bool: STARTTLS was in effect), ``auth_user`` (SMTP AUTH login
                       or null).
``message_id``         The ``Message-ID`` header as written (``<...>``), or null.
``from``, ``to``,      Lists of ``{address, name}`` from those headers (all
``cc``, ``reply_to``   occurrences, groups flattened); ``name`` is "" when absent.
``subject``            The decoded ``Subject``, or null when there is none.
``date``               The ``Date`` header in RFC 3339 UTC, or null if missing or
                       unparsable.
``text``               The first inline ``text/plain`` part, decoded; when there is
                       none but there is a ``text/html`` part, the text that HTML shows
                       (``text_from_html``); else null.
``text_from_html``     True when ``text`` was derived from the HTML part.
``html``               The first inline ``text/html`` part, decoded, or null.
``reply_text``         The new part of a (top-posted) reply: ``text`` without the
                       quoted history, signature and disclaimers (``reply.py``);
                       ``text`` itself when that cannot be worked out.
``mailbox_hash``       The ``tag`` of ``name+tag@domain`` for the recipient this
                       delivery is for, or null.
``headers``            Every header in order as ``{name, value}``: value unfolded,
                       RFC 2047 encoded words decoded.
``attachments``        Every other leaf part (files, inline images, attached
                       messages, extra text parts): ``filename`` (or null),
                       ``content_type``, ``size`` (decoded bytes), ``content_id``
                       (without ``<>``, or null), ``disposition`` (``attachment``,
                       ``inline`` or null), ``content`` (base64, or null),
                       ``content_omitted`` (true when the attachments together exceed
                       the inline limit: then no attachment carries content), ``url``
                       (with ``content_omitted``, a signed link to the decoded
                       content, like ``raw_url``; else null).
``raw_url``            A link to the raw message (``message/rfc822``) that needs no
                       token, signed and valid while the message is kept; null
                       when messages are not kept (and for simulated messages).
``auth``               ``spf`` ``{result, domain}``, ``dkim`` list of
                       ``{domain, result}``, ``dmarc`` ``{result, policy, domain}``
                       (``result`` pass, fail, none, temperror or permerror;
                       ``policy`` none, quarantine, reject or null; ``domain``
                       whose ``_dmarc`` record applied, or null).
``spam``               rspamd's verdict as stored at receipt: ``{score,
                       required_score, action, symbols}`` (``symbols`` a list of
                       ``{name, score}``), or null when no spam check ran.
``webhook``            ``{id, address}`` of the webhook this delivery is for.
``simulated``          True for messages made by the simulate endpoint.
``parse_warnings``     Sentences describing what could not be parsed or decoded.
=====================  ============================================================

Text fields (``text``, ``html``, ``reply_text``) end their lines with ``\\n`` alone: CRLF and a
lone CR, whatever the message used, become LF.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email import policy as email_policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from itertools import islice
from typing import Any

from conduit.mail import reply
from conduit.mail.addresses import split_plus
from conduit.mail.html_text import html_to_text

EVENT = "email.received"
MAX_DEPTH = 32  # multipart nesting followed; deeper parts are skipped
MAX_PARTS = 500  # MIME parts looked at
MAX_PARSED_HEADER = 16 * 1024  # longer header values are passed unfolded but undecoded
HEADER_PARSE_BUDGET = 256 * 1024  # total header text given to the (slow) structured parser
MAX_WARNINGS = 50
MAX_HEADER_BYTES = 1024 * 1024  # a header block beyond this is read as body
MAX_SHARED_HEADER = 128  # parsed header objects of values up to this length are kept for reuse
_DECODE_CHUNK = 1024 * 1024
_NOT_BASE64 = bytes(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
_LINE_BREAKS = re.compile(r"[\r\n]")  # unfolding, exactly as EmailPolicy does it
# Header lines as the stdlib's feedparser recognises them (its headerRE), one block at a time.
_HEADER_BLOCK = re.compile(rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[ \t])[^\n]*(?:\n|\Z))*")
_SURROGATES = re.compile("[\ud800-\udfff]")


class _HeaderRegistry(HeaderRegistry):
    """The stdlib's header factory, faster: it keeps the class it makes for each kind of header
    (the stdlib makes a new one, ``type(...)``, for every header it parses: a sixth of the time),
    and the header objects of short values, which recur from message to message ("text/plain;
    charset=utf-8", "base64"). Header objects are immutable: sharing one changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type] = {}

    def __getitem__(self, name: str) -> type:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str) -> Any:
        if len(value) > MAX_SHARED_HEADER:
            return super().__call__(name, value)
        return self._shared(name, value)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one instance, kept for the process's life
    def _shared(self, name: str, value: str) -> Any:
        return super().__call__(name, value)


_POLICY = email_policy.default.clone(header_factory=_HeaderRegistry())  # otherwise policy.default


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope as the server saw it."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    remote_ip: str | None = None
    helo: str | None = None
    tls: bool = False
    auth_user: str | None = None


@dataclass(frozen=True)
class DkimResult:
    """One DKIM signature's verdict: ``pass``, ``fail``, ``neutral``, ..."""

    domain: str
    result: str


@dataclass(frozen=True)
class DmarcResult:
    """The DMARC verdict: ``result``, the applied ``policy`` and the ``domain`` whose record applied."""

    result: str = "none"
    policy: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class AuthResults:
    """Sender authentication results computed by the SMTP server."""

    spf_result: str = "none"
    spf_domain: str | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: DmarcResult = DmarcResult()


class _Warnings(list[str]):
    def note(self, sentence: str) -> None:
        if sentence not in self and len(self) < MAX_WARNINGS:
            self.append(sentence)


def build_payload(
    raw: bytes,
    *,
    message_id: str,
    received_at: datetime,
    envelope: Envelope,
    rcpt_to: str,
    webhook_id: str,
    webhook_address: str,
    auth: AuthResults,
    simulated: bool,
    max_inline_attachment_bytes: int,
    extract_reply: bool = True,
    spam: dict[str, Any] | None = None,
    links: PayloadLinks | None = None,
) -> dict[str, Any]:
    """The default JSON payload (see the module docstring); never raises on bad mail.

    ``extract_reply=False`` leaves ``reply_text`` null: for a message whose reply extraction
    could not finish within its budget (the caller notes why in ``parse_warnings``)."""
    warnings = _Warnings()
    root = _read_part(raw, 0, len(raw), 1, "text/plain", warnings)
    headers = _Headers(root.headers, warnings)
    text, html, attachments = _body_parts(raw, root, warnings)
    text, html = _with_lf(text), _with_lf(html)
    text_from_html = False
    if text is None and html is not None:
        text = _text_of_html(html, warnings)
        text_from_html = text is not None
    return {
        "id": message_id,
        "event": EVENT,
        "received_at": _rfc3339(received_at),
        "envelope": {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_to),
            "remote_ip": envelope.remote_ip,
            "helo": envelope.helo,
            "tls": envelope.tls,
            "auth_user": envelope.auth_user,
        },
        "message_id": headers.first("message-id"),
        "from": headers.addresses("from"),
        "to": headers.addresses("to"),
        "cc": headers.addresses("cc"),
        "reply_to": headers.addresses("reply-to"),
        "subject": headers.first("subject"),
        "date": headers.date(),
        "text": text,
        "text_from_html": text_from_html,
        "html": html,
        "reply_text": _reply_text(text, warnings) if extract_reply else None,
        "mailbox_hash": _mailbox_hash(rcpt_to),
        "headers": headers.listing(),
        "attachments": _encode_attachments(attachments, max_inline_attachment_bytes, links),
        "raw_url": links.raw_url if links else None,
        "auth": {
            "spf": {"result": auth.spf_result, "domain": auth.spf_domain},
            "dkim": [{"domain": d.domain, "result": d.result} for d in auth.dkim],
            "dmarc": {"result": auth.dmarc.result, "policy": auth.dmarc.policy, "domain": auth.dmarc.domain},
        },
        "spam": spam,
        "webhook": {"id": webhook_id, "address": webhook_address},
        "simulated": simulated,
        "parse_warnings": list(warnings),
    }


def template_context(payload: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """What a ``payload_template`` sees: the default payload's fields plus ``raw``, the
    whole message as text (bytes that are not UTF-8 replaced by U+FFFD)."""
    return {**payload, "raw": raw.decode("utf-8", errors="replace")}


# -- parsing -------------------------------------------------------------------------
#
# The stdlib parses each header block; the MIME tree is split here, on the raw bytes.
# Why not BytesParser on the whole message: its feed parser keeps every body line as a
# str object before joining them (a large body of short lines costs many times its size,
# and 8-bit bodies are widened to 2 bytes a character), it recurses once per nesting level
# (RecursionError), and it reads each part's Content-Type through the structured header
# parser several times (minutes for 300,000 tiny parts). Here a body is only ever a span
# of ``raw`` until it is decoded, once, into what the payload needs.


class _HeaderBlock(EmailMessage):
    """A part's header block that parses each header once: the stdlib parses a header anew at
    every ``get``, and reading a part's MIME fields reads Content-Type about ten times."""

    _parsed: dict[str, Any]
    _parsed_with: Any = None  # the policy the cached values were parsed with

    def get(self, name: str, failobj: Any = None) -> Any:
        if self._parsed_with is not self.policy:
            self._parsed, self._parsed_with = {}, self.policy
        key = name.lower()
        value = self._parsed.get(key, _UNREAD)
        if value is _UNREAD:
            value = self._parsed[key] = super().get(name, _ABSENT)
        return failobj if value is _ABSENT else value


_UNREAD, _ABSENT = object(), object()


@dataclass
class _Part:
    number: int  # in document order, the message itself being part 1
    headers: Message  # the part's header block, parsed by the stdlib (policy.default)
    body_start: int
    body_end: int
    fields: tuple[str, str | None, str | None, str | None, str | None, str] | None = None  # _mime_fields', once read


def _read_part(raw: bytes, start: int, end: int, number: int, default_type: str, warnings: _Warnings) -> _Part:
    """Header block and body span of the part ``raw[start:end]``, split as the stdlib
    splits it: headers end at the first empty line or the first line that is no header."""
    block = _HEADER_BLOCK.match(raw, start, min(end, start + MAX_HEADER_BYTES))
    assert block is not None  # the pattern matches the empty string
    header_end = block.end()
    if raw.startswith(b"\r\n", header_end) and header_end + 2 <= end:
        body_start = header_end + 2
    elif raw.startswith(b"\n", header_end) and header_end < end:
        body_start = header_end + 1
    else:
        body_start = header_end
        if header_end < end:
            warnings.note(f"part {number} has no empty line between its headers and its body")
    try:
        headers = _parse_header_block(raw[start:header_end])
    except Exception:  # noqa: BLE001 - the stdlib's header parser raises anything on hostile input
        warnings.note(f"the headers of part {number} could not be parsed")
        headers = Message(policy=_POLICY)
    headers.set_default_type(default_type)
    fields = None
    try:
        fields = _mime_fields(headers)
    except Exception:  # noqa: BLE001 - e.g. a charset in an RFC 2231 parameter that cannot decode it
        headers.policy = email_policy.compat32  # plain strings, no structured parsing to fail
        warnings.note(f"the MIME headers of part {number} are malformed; they were read as plain text")
    return _Part(number, headers, body_start, end, fields)


_HEADER_LINES = re.compile(r"[^\n]*\n|[^\n]+")
_LONE_CR = re.compile(r"\r(?!\n)")


def _parse_header_block(block: bytes) -> Message:
    """The header block as ``BytesParser(_HeaderBlock, policy=_POLICY).parsebytes(block,
    headersonly=True)`` makes it, its (name, raw value) pairs taken the way the stdlib's
    ``FeedParser._parse_headers`` and ``EmailPolicy.header_source_parse`` take them. Done here
    for the blocks that parser reads without a defect or a special case (a "From " line, a
    first line that is a continuation, a field without a name, a lone CR, which it takes for a
    line break); the others go to the stdlib, whose feed parser is a visible share of the
    worker's CPU per delivery (docs/performance.md, "Payload builder's parsing fast paths");
    ``tests/unit/test_parse.py`` compares the two on every header block of the corpus."""
    text = block.decode("ascii", "surrogateescape")
    lines = _HEADER_LINES.findall(text)
    if not lines or lines[0][0] in " \t" or ("\r" in text and _LONE_CR.search(text)):
        return _stdlib_header_block(block)
    fields: list[list[str]] = []  # each field's source lines
    for line in lines:
        if line[0] in " \t":
            fields[-1].append(line)
        elif line.find(":") <= 0 or line.startswith("From "):
            return _stdlib_header_block(block)
        else:
            fields.append([line])
    msg = _HeaderBlock(policy=_POLICY)
    for source in fields:
        msg.set_raw(*_POLICY.header_source_parse(source))
    msg.set_payload("")
    return msg


def _stdlib_header_block(block: bytes) -> Message:
    return BytesParser(_HeaderBlock, policy=_POLICY).parsebytes(block, headersonly=True)


_UNREADABLE_FIELDS = ("application/octet-stream", None, None, None, None, "")


def _mime_fields(headers: Message) -> tuple[str, str | None, str | None, str | None, str | None, str]:
    """Content type, disposition, filename, Content-ID, charset and transfer encoding."""
    content_id = headers.get("content-id")
    return (
        _clean(headers.get_content_type()),
        headers.get_content_disposition(),
        _clean(filename) if (filename := headers.get_filename()) is not None else None,
        _clean(str(content_id)).strip().strip("<>") or None if content_id else None,
        headers.get_content_charset(),
        str(headers.get("content-transfer-encoding", "")).strip().lower(),
    )


def _leaves(raw: bytes, root: _Part, warnings: _Warnings) -> Iterator[_Part]:
    """Leaf parts in document order, without recursion; ``message/*`` parts are leaves
    (an attached message is passed on whole, as an attachment)."""
    stack = [(span, 1, default_type) for span, default_type in reversed(_children(raw, root, 0, warnings))]
    if not stack:
        yield root
    number = 1
    while stack:
        (start, end), depth, default_type = stack.pop()
        number += 1
        if number > MAX_PARTS:
            warnings.note(f"the message has more than {MAX_PARTS} MIME parts; the rest were left out")
            return
        part = _read_part(raw, start, end, number, default_type, warnings)
        children = _children(raw, part, depth, warnings)
        if children:
            stack.extend((span, depth + 1, child_type) for span, child_type in reversed(children))
        else:
            yield part


def _children(raw: bytes, part: _Part, depth: int, warnings: _Warnings) -> list[tuple[tuple[int, int], str]]:
    """The body spans of a multipart's parts (with their default type); [] for a leaf."""
    headers = part.headers
    if headers.get_content_maintype() != "multipart":
        return []
    what = f"part {part.number} ({headers.get_content_type()})"
    boundary = headers.get_boundary()
    if not boundary:
        warnings.note(f"{what} has no boundary; its content is treated as text")
        return []
    if depth >= MAX_DEPTH:
        warnings.note(f"{what} is nested deeper than {MAX_DEPTH} levels; its content is treated as text")
        return []
    try:
        delimiter = boundary.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:
        delimiter = boundary.encode("utf-8", errors="surrogateescape")
    # A delimiter line: "--boundary", "--" after it on the last one, then blanks. Searching
    # from the line break before it gives the regex a literal prefix: a fast scan.
    pattern = re.compile(rb"\n--" + re.escape(delimiter) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    found = list(islice(pattern.finditer(raw, max(part.body_start - 1, 0), part.body_end), MAX_PARTS + 1))
    if not found:
        warnings.note(f"{what}: its boundary never appears; its content is treated as text")
        return []
    child_type = "message/rfc822" if headers.get_content_type() == "multipart/digest" else "text/plain"
    spans = []
    for current, following in zip(found, [*found[1:], None], strict=True):
        if current.group(1):  # the close delimiter: the rest is the epilogue
            break
        start = current.end() + 1 if raw.startswith(b"\n", current.end()) else current.end()
        # The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
        end = _before_line_break(raw, following.start() + 1, start) if following else part.body_end
        spans.append(((start, end), child_type))
    else:
        if len(found) <= MAX_PARTS:  # else the close delimiter was simply not looked for
            warnings.note(f"{what} is not closed by its final boundary; its last part runs to the end")
    return spans


def _before_line_break(raw: bytes, pos: int, floor: int) -> int:
    if pos - 2 >= floor and raw[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if pos - 1 >= floor and raw[pos - 1 : pos] == b"\n":
        return pos - 1
    return pos


def _clean(value: str) -> str:
    """Turn the parser's surrogate-escaped 8-bit bytes back into text (UTF-8, else U+FFFD)."""
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (from a decoded word)
        return _no_surrogates(value)


def _empty_domain_read_as_null(value: str, addresses: Sequence[Any]) -> bool:
    """A list ending in an empty domain (``a@``): Python 3.11's parser fails on it, later ones read
    it as the null address ``<>``. Malformed on every version, so that the payload is the same."""
    return value.rstrip().endswith("@") and any(a.addr_spec == "<>" for a in addresses)


class _Headers:
    """Header values decoded once, within a budget of structured parsing."""

    def __init__(self, msg: Message, warnings: _Warnings) -> None:
        self._warnings = warnings
        self._budget = HEADER_PARSE_BUDGET
        self._items: list[tuple[str, str]] = []  # (name, unfolded raw value)
        self._names: list[str] = []  # the items' names in lower case
        self._values: list[str] = []
        self._objects: dict[int, Any] = {}  # the header objects _decode made (None: failed), by item
        for raw_name, raw_value in msg.raw_items():
            name = _clean(str(raw_name))
            # a header object (not from the parser) is made a string
            value = raw_value if isinstance(raw_value, str) else str(raw_value)
            cleaned = _clean(value)
            if cleaned is not value and "\ufffd" in cleaned:
                warnings.note(f"header {name} contains bytes that are not UTF-8; they were replaced with U+FFFD")
            unfolded = _LINE_BREAKS.sub("", cleaned) if "\n" in cleaned or "\r" in cleaned else cleaned
            self._items.append((name, unfolded))
            self._names.append(name.lower())
            self._values.append(self._decode(len(self._items) - 1, name, unfolded))

    def _affordable(self, name: str, value: str) -> bool:
        """Whether the value may be decoded (then its length is spent from the budget)."""
        if len(value) > MAX_PARSED_HEADER:
            self._warnings.note(f"header {name} is too long to decode; passed on as written")
            return False
        if len(value) > self._budget:
            self._warnings.note("the headers are too long to decode them all; the rest are passed on as written")
            return False
        self._budget -= len(value)
        return True

    def _parsed(self, name: str, value: str) -> Any | None:
        try:
            return _POLICY.header_factory(name, value)
        except Exception:  # noqa: BLE001 - the stdlib's header parser raises anything on hostile input
            self._warnings.note(f"header {name} is malformed; passed on as written")
            return None

    def _decode(self, index: int, name: str, value: str) -> str:
        if value.isascii() and "=?" not in value:
            return value  # nothing to decode: equal to what the structured parser gives
        if not self._affordable(name, value):
            return value
        header = self._objects[index] = self._parsed(name, value)
        return value if header is None else _clean(str(header))

    def first(self, name: str) -> str | None:
        if name in self._names:
            return self._values[self._names.index(name)].strip()
        return None

    def listing(self) -> list[dict[str, str]]:
        return [{"name": name, "value": value} for (name, _), value in zip(self._items, self._values, strict=True)]

    def addresses(self, name: str) -> list[dict[str, str]]:
        result: list[dict[str, str]] = []
        if name not in self._names:
            return result
        for index, (item_name, value) in enumerate(self._items):
            if self._names[index] != name:
                continue
            result.extend({"address": _clean(addr), "name": _clean(display)}
                          for display, addr in self._address_pairs(index, item_name, value) if addr or display)
        return result

    def _address_pairs(self, index: int, name: str, value: str) -> list[tuple[str, str]]:
        """(display name, address) pairs; a plain list is read directly, any other by the stdlib
        (the header object _decode made is used again: parsing is the same, the budget is spent
        as if it were parsed anew)."""
        if not self._affordable(name, value):
            return _fallback_addresses(value)
        pairs = _plain_addresses(value)
        if pairs is not None:
            return pairs
        header = self._objects[index] if index in self._objects else self._parsed(name, value)
        parsed = getattr(header, "addresses", None)
        if parsed is not None and _empty_domain_read_as_null(value, parsed):
            self._warnings.note(f"header {name} is malformed; passed on as written")
            parsed = None
        return [(a.display_name, a.addr_spec) for a in parsed] if parsed is not None else _fallback_addresses(value)

    def date(self) -> str | None:
        value = self.first("date")
        if value is None:
            return None
        try:
            return _rfc3339(_plain_date(value) or parsedate_to_datetime(value))
        except Exception:  # noqa: BLE001 - the stdlib's date parser raises anything on hostile input
            self._warnings.note("the Date header could not be parsed")
            return None


# A Date as RFC 5322 writes it, as nearly all mail does: "[Day, ]D Mon YYYY HH:MM[:SS] +hhmm[ (zone)]",
# or with "GMT" for +hhmm (the obsolete form many mailers still write), with a year from 1000.
# For these, _plain_date gives what email.utils.parsedate_to_datetime gives (tests/unit/test_parse.py
# compares them on generated dates) at a fraction of its cost; any other form is left to it.
_PLAIN_DATE = re.compile(
    r"(?:[A-Za-z]{3}, )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9]\d{3}) "
    r"(\d{2}):(\d{2})(?::(\d{2}))? (?:([+-])(\d{2})(\d{2})|GMT)(?: \([^()]*\))?")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}


def _plain_date(value: str) -> datetime | None:
    """The moment of a plain Date (UTC when the zone is "-0000": RFC 5322 3.3), or None when the
    value is not in the plain form. Raises ValueError for an impossible date, as the stdlib does."""
    match = _PLAIN_DATE.fullmatch(value)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    offset = int(zone_hours) * 3600 + int(zone_minutes) * 60 if sign else 0  # no sign: GMT
    zone = UTC if offset == 0 else timezone(timedelta(seconds=-offset if sign == "-" else offset))
    return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second or 0), tzinfo=zone)


# An address list as most mail writes it: ``a@b``, ``Name <a@b>``, ``"Last, First" <a@b>``, in
# ASCII, without comments, groups, escapes or encoded words. For these the stdlib's structured
# parser (a token tree per character, most of the header CPU) gives exactly the text as written;
# anything else is left to it (test_addresses_fast_path.py checks that both agree).
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_PLAIN_MAILBOX = re.compile(
    rf'[ \t]*(?:({_ADDR_SPEC})|(?:({_ATOM}(?: {_ATOM})*)|"([\x20\x21\x23-\x5b\x5d-\x7e]*)")?[ \t]*<({_ADDR_SPEC})>)'
    r"[ \t]*(,|\Z)"
)


def _plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """(display name, address) pairs of a plain address list, or None when it is not plain."""
    if not value.isascii() or "=?" in value:
        return None
    pairs = []
    position, end = 0, len(value)
    while position < end:
        match = _PLAIN_MAILBOX.match(value, position)
        if match is None:
            return None
        bare, phrase, quoted, angled, comma = match.groups()
        pairs.append(("", bare) if bare else (phrase or quoted or "", angled))
        position = match.end()
        if comma and position == end:  # a trailing comma: the stdlib's to judge
            return None
    return pairs or None


def _fallback_addresses(value: str) -> list[tuple[str, str]]:
    try:
        return getaddresses([value])
    except Exception:  # noqa: BLE001 - the stdlib's address parser raises anything on hostile input
        return []


def _rfc3339(moment: datetime) -> str:
    """UTC, to the second, with a "Z"; a naive moment is UTC ("-0000" in a Date: RFC 5322 3.3)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's %Y does not pad: kept as it was for these
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


# -- body and attachments ------------------------------------------------------------


@dataclass(frozen=True)
class PayloadLinks:
    """Signed links to a kept message (made by the caller, which holds the key): ``raw_url``,
    and ``attachment_url`` with ``{index}`` standing for an attachment's position."""

    raw_url: str
    attachment_url: str


@dataclass
class _Attachment:
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str | None
    data: bytes | bytearray


def _body_parts(raw: bytes, root: _Part, warnings: _Warnings) -> tuple[str | None, str | None, list[_Attachment]]:
    """The first inline text/plain and text/html parts; every other leaf is an attachment,
    so nothing is lost (a second text part, a calendar invite, an attached message)."""
    text: str | None = None
    html: str | None = None
    attachments: list[_Attachment] = []
    for part in _leaves(raw, root, warnings):
        try:
            ctype, disposition, filename, content_id, charset, cte = part.fields or _mime_fields(part.headers)
        except Exception:  # noqa: BLE001 - the stdlib's header parser raises anything on hostile input
            warnings.note(f"the MIME headers of part {part.number} are unreadable; passed on as an attachment")
            ctype, disposition, filename, content_id, charset, cte = _UNREADABLE_FIELDS
        is_body = disposition != "attachment" and filename is None
        unsplit = ctype.startswith("multipart/")  # could not be split: treated as text
        if is_body and text is None and (ctype == "text/plain" or unsplit):
            text = _decode_text(_part_bytes(raw, part, cte, warnings), charset, part.number, warnings)
        elif is_body and html is None and ctype == "text/html":
            html = _decode_text(_part_bytes(raw, part, cte, warnings), charset, part.number, warnings)
        else:
            attachments.append(_Attachment(
                filename=filename,
                content_type=ctype,
                content_id=content_id,
                disposition=_clean(disposition) if disposition is not None else None,
                data=_part_bytes(raw, part, cte, warnings),
            ))
        for defect in part.headers.defects:
            warnings.note(f"part {part.number} is malformed ({type(defect).__name__})")
    return text, html, attachments


def _part_bytes(raw: bytes, part: _Part, cte: str, warnings: _Warnings) -> bytes | bytearray:
    """The part's content with its transfer encoding undone (the one copy that is made)."""
    what = f"part {part.number}"
    if cte == "base64":
        return _b64decode(raw, part.body_start, part.body_end, what, warnings)
    with memoryview(raw) as view:
        body = view[part.body_start : part.body_end]
        if cte == "quoted-printable":
            return binascii.a2b_qp(body)
        if cte not in ("", "7bit", "8bit", "binary"):
            warnings.note(f"{what} has the unsupported transfer encoding {cte!r}; passed on undecoded")
        return body.tobytes()


def _b64decode(raw: bytes, start: int, end: int, what: str, warnings: _Warnings) -> bytearray:
    """Lenient base64 like the stdlib's (foreign characters skipped, padding repaired),
    decoded in chunks so the encoded text is never copied whole (nor the decoded one: the
    bytearray is returned as it is)."""
    out = bytearray()
    carry = b""
    for offset in range(start, end, _DECODE_CHUNK):
        chunk = raw[offset : min(end, offset + _DECODE_CHUNK)].translate(None, b" \t\r\n=")
        valid = chunk.translate(None, _NOT_BASE64)
        if len(valid) != len(chunk):
            warnings.note(f"{what}: characters that are not base64 were skipped")
        valid = carry + valid
        usable = len(valid) - len(valid) % 4
        out += binascii.a2b_base64(valid[:usable])
        carry = valid[usable:]
    if len(carry) == 1:
        warnings.note(f"{what}: the base64 text ends with a stray character, which was dropped")
    elif carry:
        out += binascii.a2b_base64(carry + b"=" * (4 - len(carry)))
    return out


def _decode_text(data: bytes | bytearray, charset: str | None, number: int, warnings: _Warnings) -> str:
    """Declared charset, else UTF-8 (the usual truth behind a wrong label), else replacement."""
    what = f"part {number}"
    charset = charset or "us-ascii"
    try:
        codec = codecs.lookup(charset).name
    except Exception:  # noqa: BLE001 - LookupError, or a name that is not even ASCII
        codec = "utf-8"
        warnings.note(f"{what} declares the unknown charset {charset!r}; decoded as UTF-8")
    for candidate in dict.fromkeys((codec, "utf-8")):
        try:
            return _no_surrogates(data.decode(candidate))
        except (UnicodeDecodeError, LookupError):  # LookupError: not a text codec (e.g. "zlib")
            continue
    warnings.note(f"{what} is not valid {charset}; undecodable bytes were replaced with U+FFFD")
    try:
        return _no_surrogates(data.decode(codec, errors="replace"))
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _no_surrogates(text: str) -> str:
    """Codecs such as unicode_escape can yield lone surrogates, which JSON encoders refuse."""
    if text.isascii():  # a flag of the str object: no scan
        return text
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def _encode_attachments(attachments: list[_Attachment], limit: int,
                        links: PayloadLinks | None = None) -> list[dict[str, Any]]:
    """All contents inline, or none when together they exceed ``limit`` (the receiver then
    knows every attachment must be fetched elsewhere, not guessed one by one): then each
    has its link, when the message is kept."""
    omit = sum(len(a.data) for a in attachments) > limit
    result = []
    for index, attachment in enumerate(attachments):
        size = len(attachment.data)
        content = None
        if not omit:
            encoded = base64.b64encode(attachment.data)
            attachment.data = b""  # drop the decoded copy before making the str one
            content = encoded.decode("ascii")
            del encoded
        result.append({
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "size": size,
            "content_id": attachment.content_id,
            "disposition": attachment.disposition,
            "content": content,
            "content_omitted": omit,
            "url": links.attachment_url.replace("{index}", str(index)) if omit and links else None,
        })
    return result


# -- derived fields --------------------------------------------------------------------


def _with_lf(text: str | None) -> str | None:
    """Line breaks as ``\\n`` (CRLF and lone CR alike)."""
    if text is None or "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")  # replace, not split and join: no list of a million lines
    return text.replace("\r", "\n") if "\r" in text else text


def _text_of_html(html: str, warnings: _Warnings) -> str | None:
    converted = html_to_text(html)
    for warning in converted.warnings:
        warnings.note(warning)
    return converted.text


def _reply_text(text: str | None, warnings: _Warnings) -> str | None:
    result, extracted = reply.reply_text(text)
    if not extracted:
        warnings.note("reply_text could not be extracted; it is the whole text")
    return result


def _mailbox_hash(rcpt_to: str) -> str | None:
    local, _, _ = rcpt_to.rpartition("@")
    _, tag = split_plus(local)
    return tag or None
