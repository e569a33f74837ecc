"""MAIL FROM and RCPT TO paths, read by Conduit's own RFC 5321 parser (conduit/smtp/syntax.py).

tests/unit/smtp_paths_recorded.json holds what the parser Conduit used before (aiosmtpd's, on
the standard library's private email header parser) made of about 4,500 paths: hand-picked
ones, random strings of the pieces addresses are made of, and paths built from RFC 5321's
grammar (``grammar_paths`` below, with the seed that made them). Each path's entry is
[path, address or null (or "error:<exception>" where that parser crashed), what followed].
The new parser must agree with it, except where this file says why not.
"""

from __future__ import annotations

import json
import random
from pathlib import Path as FilePath

import pytest

from conduit.smtp.syntax import (
    _COMMON,
    Path,
    parse_by_grammar,
    parse_params,
    parse_path,
)

RECORDED = {path: (address, rest) for path, address, rest in
            json.loads((FilePath(__file__).parent / "smtp_paths_recorded.json").read_text())}

_ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
_UTF8 = "éüжö用例"


def grammar_paths(count: int, seed: int = 6531) -> list[str]:
    """Paths built from RFC 5321's grammar (with RFC 6531's UTF-8): each one is well formed."""
    rng = random.Random(seed)

    def atom() -> str:
        chars = _ATEXT + (_UTF8 if rng.random() < 0.2 else "")
        return "".join(rng.choice(chars) for _ in range(rng.randint(1, 8)))

    def label() -> str:
        chars = "abcxyz019" + ("éü例" if rng.random() < 0.1 else "")
        inner = "".join(rng.choice(chars + "-") for _ in range(rng.randint(0, 6)))
        return rng.choice(chars) + (inner + rng.choice(chars) if rng.random() < 0.7 else "")

    def domain() -> str:
        return ".".join(label() for _ in range(rng.randint(1, 4)))

    def local() -> str:
        if rng.random() < 0.15:
            content = "".join(rng.choice(' abc.@,;:()<>[]é') if rng.random() < 0.9 else '\\' + rng.choice('"\\ a')
                              for _ in range(rng.randint(0, 8)))
            return f'"{content}"'
        return ".".join(atom() for _ in range(rng.randint(1, 3)))

    def right() -> str:
        r = rng.random()
        if r < 0.05:
            return f"[{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}]"
        if r < 0.08:
            return rng.choice(["[IPv6:2001:db8::1]", "[IPv6:::1]", "[IPv6:2001:db8:0:0:1:0:0:1]",
                               "[IPv6:::ffff:192.0.2.1]"])
        return domain()

    paths = []
    for _ in range(count):
        adl = ""
        if rng.random() < 0.05:
            adl = ",".join("@" + domain() for _ in range(rng.randint(1, 2))) + ":"
        params = rng.choice(["", "", "", " SIZE=1000", " BODY=8BITMIME SMTPUTF8", "\tSIZE=1"])
        paths.append(f"<{adl}{local()}@{right()}>{params}")
    return paths


def test_paths_built_from_the_grammar_are_read_as_before():
    paths = grammar_paths(1500)
    assert all(p in RECORDED for p in paths)  # the generator still makes the recorded paths
    differ = {}
    for path in paths:
        parsed = parse_path(path)
        assert parsed is not None and parsed.has_domain, path
        address, rest = RECORDED[path]
        if (parsed.mailbox, parsed.rest) != (address, rest.strip()):
            differ[path] = parsed.mailbox
    # A lone dot is no local part unquoted; the old parser dropped the quotes all the same.
    assert differ == {'<"."@9.0y.éxbx.a-azc>': '"."@9.0y.éxbx.a-azc'}


# Deliberate differences from the old parser, each with what it made of the path. The old parser
# read a path as a header's address (RFC 5322), so it took comments, folding white space and
# encoded words, and stopped wherever it could no longer read, leaving the rest as "parameters".
HAND_PICKED: list[tuple[str, Path | None, str]] = [
    ("<ann@sender.example>", Path("ann@sender.example", "", True), "the same"),
    ("<ann@sender.example> SIZE=4500 BODY=8BITMIME", Path("ann@sender.example", "SIZE=4500 BODY=8BITMIME", True),
     "the same"),
    ("<ann@sender.example>\tSIZE=1", Path("ann@sender.example", "SIZE=1", True), "the same"),
    ("ann@sender.example", Path("ann@sender.example", "", True), "the same: brackets left out by some senders"),
    ("ann@sender.example SIZE=1", Path("ann@sender.example", "SIZE=1", True), "the same"),
    ("<>", Path("", "", True), "the null path: the old parser gave '<>'"),
    ("<> SIZE=10", Path("", "SIZE=10", True), "the null path, with parameters"),
    ("<ann..lee@sender.example>", Path("ann..lee@sender.example", "", True), "the same: empty atoms are taken"),
    ("<.ann@sender.example>", Path(".ann@sender.example", "", True), "the same"),
    ("<ann@[192.0.2.1]>", Path("ann@[192.0.2.1]", "", True), "the same"),
    ("<ann@[IPv6:2001:db8::1]>", Path("ann@[IPv6:2001:db8::1]", "", True), "the same"),
    ("<ann@[tag:content]>", Path("ann@[tag:content]", "", True), "a general address literal"),
    ('<"ann lee"@sender.example>', Path('"ann lee"@sender.example', "", True), "the same"),
    ('<"jörg"@x.example>', Path("jörg@x.example", "", True), "the same: quotes without need go"),
    ("<@relay.example:ann@sender.example>", Path("ann@sender.example", "", True), "the same: the route is dropped"),
    ("<@a.example,@b.example:ann@c.example>", Path("ann@c.example", "", True), "the same"),
    ("<jörg@sender.example>", Path("jörg@sender.example", "", True), "the same (RFC 6531)"),
    ("<用户@例子.广告>", Path("用户@例子.广告", "", True), "the same (RFC 6531)"),
    ("<postmaster>", Path("postmaster", "", False), "RCPT TO:<Postmaster> (RFC 5321 4.1.1.3)"),
    ("<ann>", Path("ann", "", False), "no domain: RCPT takes only Postmaster, MAIL none"),
    ("<ann@sender.example>X", Path("ann@sender.example", "X", True), "the same: the rest is not parameters"),
    ("<ann@sender.example> (comment) SIZE=1", Path("ann@sender.example", "(comment) SIZE=1", True),
     "a comment is not an ESMTP parameter: the old parser dropped it"),
    ("<=?utf-8?q?ann?=@sender.example>", Path("=?utf-8?q?ann?=@sender.example", "", True),
     "an encoded word is never part of an address (RFC 2047 5): the old parser decoded it to ann@"),
    ("<ann @sender.example>", None, "no spaces in a path: the old parser dropped them"),
    ("<ann@ sender.example>", None, "likewise"),
    ("<ann@sender.example >", None, "likewise"),
    (" <ann@sender.example>", None, "likewise (the protocol strips the argument before)"),
    ("<a(b)c@d.example>", None, "no comments in a path: the old parser made it \"a c\"@d.example"),
    ("<ann@sender.example", None, "an unclosed bracket: the old parser took it"),
    ("ann@sender.example>", None, "a stray bracket: the old parser gave it as the rest"),
    ("<ann@=?utf-8?q?x?=>", None, "an encoded word as the domain: the old parser made it ann@x"),
    ("<ann@x-.example>", None, "a label ends with a hyphen"),
    ("<ann@x_y.example>", None, "an underscore in a domain"),
    ("<ann@x.example.>", None, "a trailing dot in a domain"),
    ("<ann@[300.1.1.1]>", None, "an address literal that is no address"),
    ("<ann@sender..example>", None, "the same: an empty label"),
    ("<ann@>", None, "the same"),
    ("<@sender.example>", None, "the same"),
    ("<a@@b>", None, "the same"),
    ("<", None, "the old parser crashed (IndexError): answered 451"),
    ("<aZ@[Z0.>a", None, "the old parser crashed (AttributeError): answered 451"),
]


@pytest.mark.parametrize(("arg", "expected", "why"), HAND_PICKED, ids=[case[0] for case in HAND_PICKED])
def test_hand_picked_paths(arg: str, expected: Path | None, why: str):
    assert parse_path(arg) == expected, why


def test_what_is_taken_now_was_taken_before_as_the_same_mailbox():
    """Over the whole recorded corpus: a path read now (with a domain) was read before, as the
    same mailbox and rest, but for the differences named above; none makes the parser raise."""
    taken = 0
    for arg, (address, rest) in RECORDED.items():
        parsed = parse_path(arg)
        if parsed is None or not parsed.has_domain or not parsed.mailbox:
            continue
        taken += 1
        if "=?" in arg:  # the old parser decoded encoded words
            continue
        assert address == parsed.mailbox or arg == '<"."@9.0y.éxbx.a-azc>', arg
        if "(" not in arg:  # the old parser dropped comments after the path
            assert parsed.rest == (rest or "").strip(), arg
    assert taken > 1500


def test_what_was_refused_before_is_refused_now():
    refused_before = [arg for arg, (address, _) in RECORDED.items() if address is None]
    assert len(refused_before) > 50
    assert [arg for arg in refused_before if parse_path(arg) is not None and parse_path(arg).has_domain] == []


def test_the_shortcut_for_common_paths_reads_them_as_the_grammar_does():
    paths = [*RECORDED, *(case[0] for case in HAND_PICKED)]
    assert [p for p in paths if parse_path(p) != parse_by_grammar(p)] == []
    assert 500 < sum(1 for p in paths if _COMMON.match(p)) < len(paths) - 500  # both ways, many times


def test_a_long_hostile_path_is_read_in_linear_time():
    """No backtracking blow-up: a label of hyphens, a run of dots (bounded by the line limit)."""
    for arg in ("<a@" + "a-" * 250 + ">", "<" + "." * 500 + "@x>", "<a@" + "a" + "-" * 500 + ">"):
        assert parse_path(arg) is None


def test_esmtp_parameters():
    assert parse_params(["SIZE=10", "BODY=8BITMIME", "SMTPUTF8"]) == {"SIZE": "10", "BODY": "8BITMIME",
                                                                        "SMTPUTF8": True}
    assert parse_params(["SIZE="]) is None
    assert parse_params(["(C)"]) is None
