"""ConduitSMTP sets a session up without aiosmtpd's SMTP.__init__ (whose introspection cost 0.13 ms
a connection) and reads plain MAIL FROM and RCPT TO paths without the stdlib's address parser: it
must come to exactly what aiosmtpd would. A new aiosmtpd that does something more or different
fails here rather than in a conversation."""

from __future__ import annotations

import asyncio
import collections
import random
import ssl
import types
import weakref
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, _AuthMechAttr

from conduit.config import load_settings
from conduit.smtp.handler import ConduitHandler, SmtpContext
from conduit.smtp.server import _PLAIN_PATH, ConduitSMTP, SessionLimiter, tls_context
from tests.support.mail_auth import TlsFiles

CONDUIT_ONLY = {"conduit_handler", "limiter", "_counted"}


def _shape(value: Any, protocol: SMTP) -> Any:
    """A value with what differs between two sessions by nature (futures, the protocol itself) left out."""
    if isinstance(value, types.MethodType):
        return ("bound", value.__func__, "protocol" if value.__self__ is protocol else value.__self__)
    if isinstance(value, _AuthMechAttr):
        return (_shape(value.method, protocol), value.is_builtin)
    if isinstance(value, collections.defaultdict):
        return ("defaultdict", dict(value), value.default_factory())
    if isinstance(value, dict):
        return {key: _shape(item, protocol) for key, item in value.items()}
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit)
    if isinstance(value, (asyncio.Future, weakref.ref, collections.deque)):
        return type(value)
    return value


def _state(protocol: SMTP) -> dict[str, Any]:
    return {name: _shape(value, protocol) for name, value in vars(protocol).items() if name not in CONDUIT_ONLY}


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("auth_require_tls", [False, True])
async def test_a_session_is_set_up_as_aiosmtpd_would(tmp_path: Path, tls: bool, auth_require_tls: bool):
    context: ssl.SSLContext | None = None
    if tls:
        files = TlsFiles.create(tmp_path)
        context = tls_context(str(files.cert), str(files.key))
    settings = load_settings(secret_key="k" * 40)
    handler = ConduitHandler(SmtpContext(settings=settings, sessions=None, committer=None, dns=None))
    options = {"hostname": "mx.example", "ident": "Conduit ESMTP", "data_size_limit": 1000,
               "tls_context": context, "timeout": 300, "auth_require_tls": auth_require_tls}
    ours = ConduitSMTP(handler, SessionLimiter(1), **options)
    theirs = ConduitSMTP.__new__(ConduitSMTP)
    theirs.command_size_limits = collections.defaultdict(lambda: theirs.command_size_limit)
    SMTP.__init__(theirs, handler, enable_SMTPUTF8=True, decode_data=False, require_starttls=False,
                  auth_required=False, **options)
    expected = _state(theirs)
    expected["require_starttls"] = False  # aiosmtpd: `tls_context and require_starttls`, None without TLS
    assert _state(ours) == expected
    assert set(ours._auth_methods) == {"LOGIN", "PLAIN"}


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


def _outcome(getaddr: Any, arg: str, limit: int) -> Any:
    try:
        return getaddr(types.SimpleNamespace(local_part_limit=limit), arg)
    except Exception as exc:  # noqa: BLE001 - the same error is the same outcome
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


@pytest.mark.parametrize("limit", [0, 8])
def test_paths_are_read_as_aiosmtpd_reads_them(limit: int):
    paths = PATHS + _random_paths(20_000)
    differ = [(p, _outcome(ConduitSMTP._getaddr, p, limit), _outcome(SMTP._getaddr, p, limit)) for p in paths
              if _outcome(ConduitSMTP._getaddr, p, limit) != _outcome(SMTP._getaddr, p, limit)]
    assert differ == []
    plain = sum(1 for p in paths if _PLAIN_PATH.fullmatch(p))
    assert 2_000 < plain < len(paths) - 2_000  # both ways of reading were tried, many times
