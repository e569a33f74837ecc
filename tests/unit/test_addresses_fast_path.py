"""Plain address lists are read without the stdlib's structured parser, with the same result."""

from __future__ import annotations

import random
from email import policy

import pytest

from conduit.mail.parse import _plain_addresses


def _stdlib(value: str) -> list[tuple[str, str]]:
    return [(a.display_name, a.addr_spec) for a in policy.default.header_factory("To", value).addresses]


COMMON = [
    "<sender@example.org>",
    "alice@example.org",
    "Bob <bob@example.com>",
    "Bob<bob@example.com>",
    '"Alice Example" <alice@example.org>',
    '"Smith, Jane" <jane@example.com>, "O\'Brien" <ob@example.ie>',
    "hook@example.com, Bob <bob@example.com>",
    "  Support Team   <support+ticket-42@example.com>  ",
    "\tfirst.last+tag@sub.example.co.uk\t",
    "weird!#$%&'*+-/=^_`{|}~?@example.com",  # all of atext ("=?" apart: see below)
    "A B C D E F <abc@example.com>, x <a@b>, UPPER@EXAMPLE.COM",
    '"" <empty@example.com>',
]


@pytest.mark.parametrize("value", COMMON)
def test_common_forms_take_the_fast_path_and_agree(value):
    assert _plain_addresses(value) == _stdlib(value)


UNUSUAL = [
    "alice@example.org (Alice)",  # comment
    "Mary (the boss) <mary@example.com>",
    "J. Doe <j.doe@example.com>",  # obsolete phrase
    '"A \\"quoted\\" name" <q@example.com>',  # escape
    "Team: a@example.com, b@example.com;",  # group
    "undisclosed-recipients:;",
    "<@relay.example:route@example.com>",  # source route
    "user@[192.0.2.1]",  # domain literal
    "a@example.com,,b@example.com",
    "a@example.com,",
    "=?utf-8?q?Z=C3=BCrich?= <zh@example.ch>",
    "Jörg <j@example.de>",
    "jörg@exämple.de",
    ".dot@example.com", "dot.@example.com", "a..b@example.com", "a@example.com.",
    "a@b@c", "no-at-sign", "<>", "", "   ", "<a@example.com", "a@example.com>", '"unterminated <u@example.com>',
    "Spaced  Name <s@example.com>",  # the stdlib collapses the run of spaces
]


@pytest.mark.parametrize("value", UNUSUAL)
def test_unusual_forms_are_left_to_the_stdlib(value):
    assert _plain_addresses(value) is None


_PIECES = [
    "a", "Bob", "x.y", "@", "example.com", "<", ">", ",", ", ", " ", "  ", "\t", '"', "\\", "(", ")", ".", ":", ";",
    "[", "]", "=?", "?=", "'", "+", "-", "_", "~", "ä", "Smith, Jane", "a@b", "<a@b>", "c.d@e.f", '"q q"', "\r", "\n",
    "=", "?", "!", "#", "$", "%", "&", "*", "/", "^", "`", "{", "|", "}", "0", "Z",
]


def test_random_values_agree_whenever_the_fast_path_answers():
    rng = random.Random(2024)
    answered = 0
    for _ in range(20000):
        value = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 12)))
        fast = _plain_addresses(value)
        if fast is not None:
            answered += 1
            assert fast == _stdlib(value), value
    assert answered > 300  # the generator does reach the fast path


def test_random_well_formed_lists_agree():
    rng = random.Random(7)
    atoms = ["a", "Bob", "x_y", "o'neil", "+1", "Z9", "{t}", "a=b"]
    for _ in range(3000):
        mailboxes = []
        for _ in range(rng.randint(1, 4)):
            addr = ".".join(rng.sample(atoms, rng.randint(1, 2))) + "@" + ".".join(rng.sample(atoms, rng.randint(1, 3)))
            shape = rng.randrange(4)
            if shape == 0:
                mailbox = addr
            elif shape == 1:
                mailbox = f"<{addr}>"
            elif shape == 2:
                mailbox = " ".join(rng.sample(atoms, rng.randint(1, 3))) + rng.choice(["", " ", "\t "]) + f"<{addr}>"
            else:
                content = "".join(rng.choice(" ,;:()<>@.[]'a#Z~") for _ in range(rng.randint(0, 8)))
                mailbox = f'"{content}"{rng.choice(["", " "])}<{addr}>'
            mailboxes.append(rng.choice(["", " ", "\t"]) + mailbox + rng.choice(["", " "]))
        value = ",".join(mailboxes)
        fast = _plain_addresses(value)
        assert fast is not None, value
        assert fast == _stdlib(value), value
