"""MAIL FROM and RCPT TO paths are read as aiosmtpd (Conduit's SMTP library before its own
protocol) read them: plain <local@domain> paths by a regular expression, the rest by the stdlib's
address parser. Both ways must come to exactly what aiosmtpd's parser gave."""

from __future__ import annotations

import random
import types
from typing import Any

from aiosmtpd.smtp import SMTP

from conduit.smtp.syntax import _SIMPLE, parse_address

# --- MAIL FROM / RCPT TO paths ------------------------------------------------------------

PATHS = [
    "", "<>", "<ann@sender.example>", "<ann@sender.example> SIZE=4500 BODY=8BITMIME", "<Ann.Lee@Sender.Example>",
    "ann@sender.example", "<ann+tag@in.example>", "<SRS0=HHH=TT=example.org=ann@bounce.example>",
    "<prvs=1234abcd=ann@sender.example>", "<weird!#$%&'*+-/=^_`{|}~?@example.com>", "<a@b>",
    "<ann@sender.example>\tSIZE=1", "<ann@sender.example>   ", "<ann@sender.example>X", "<ann@sender.example>(c) SIZE=1",
    "<ann@sender.example> (comment) SIZE=1", " <ann@sender.example>", "<ann @sender.example>",
    "<ann@ sender.example>", "<ann@sender.example >", "<ann..lee@sender.example>", "<.ann@sender.example>",
    "<ann.@sender.example>", "<ann@sender..example>", "<ann@[192.0.2.1]>", '<"ann lee"@sender.example>',
    "<@relay.example:ann@sender.example>", "<=?utf-8?q?ann?=@sender.example>", "<ann@=?utf-8?q?x?=>",
    "<=?ann@sender.example>", "<ann@sender.example", "ann@sender.example>", "<ann>", "<@sender.example>",
    "<ann@>", "<jörg@sender.example>", "<ann@bücher.example>", "<ann\\@x@sender.example>", "<a(b)c@d.example>",
    "<", "<<ann@sender.example>>", "<ann@sender.example><bob@sender.example>", "<ann@sender.example>\r\n",
]
_PIECES = ["<", ">", "@", ".", "a", "Z", "0", "+", "=", "?", "=?", "-", "_", "~", "!", "'", " ", "\t", "(", ")", '"',
           "\\", "[", "]", ":", ";", ",", "é", "ü", "x" * 70, "sender", "example", " SIZE=10", "=?utf-8?q?x?="]


def _aiosmtpd(arg: str) -> Any:
    try:
        return SMTP._getaddr(types.SimpleNamespace(local_part_limit=0), arg)
    except Exception as exc:  # noqa: BLE001 - the same error is the same outcome
        return type(exc)


def _ours(arg: str) -> Any:
    try:
        return parse_address(arg)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


def _random_paths(count: int) -> list[str]:
    rng = random.Random(5321)
    plain = [rng.choice("abcXYZ019.+-=_") for _ in range(200)]
    paths = []
    for _ in range(count):
        local = "".join(rng.choice(_PIECES if rng.random() < 0.3 else plain) for _ in range(rng.randint(0, 6)))
        domain = "".join(rng.choice(_PIECES if rng.random() < 0.3 else plain) for _ in range(rng.randint(0, 6)))
        rest = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 3)))
        paths.append(f"<{local}@{domain}>{rest}" if rng.random() < 0.8
                     else "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 10))))
    return paths


def test_paths_are_read_as_aiosmtpd_read_them():
    paths = PATHS + _random_paths(20_000)
    differ = [(p, _ours(p), _aiosmtpd(p)) for p in paths if _ours(p) != _aiosmtpd(p)]
    assert differ == []
    plain = sum(1 for p in paths if _SIMPLE.match(p))
    assert 200 < plain < len(paths) - 200  # both ways of reading were tried, many times
