"""Canonical form of an email domain name, the key under which domains are claimed.

Why: "Bücher.Example.", "BÜCHER.example" and "xn--bcher-kva.example" are one domain,
so they must be one row (a unique constraint) and one DNS query. We store the
ASCII A-label form, mapped with UTS #46 (non-transitional, as browsers and mail
software do) and checked with IDNA 2008, both from the ``idna`` package.
"""

from __future__ import annotations

import re

import idna

from conduit.net.addresses import parse_host_ip

MAX_LENGTH = 253
MAX_LABEL = 63
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def normalize_domain_name(name: str) -> str:
    """Return the lower-case A-label form of ``name`` or raise ValueError saying why not.

    Pure-ASCII labels are checked as letters/digits/hyphens only (so a legal host name
    such as ``r3---sn.example`` is not refused for IDNA 2008's hyphen rules);
    ``xn--`` labels must decode to a valid U-label; other labels are encoded.
    """
    if not isinstance(name, str):
        raise ValueError("a domain name must be a string")
    text = name.strip()
    shown = text[:80] + ("…" if len(text) > 80 else "")
    if not text:
        raise ValueError("the domain name is empty")
    if len(text) > 4 * MAX_LENGTH:
        raise ValueError(f"'{shown}' is too long to be a domain name")
    if parse_host_ip(text) is not None:
        raise ValueError(f"'{shown}' is an IP address, not a domain name")
    try:
        text = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise ValueError(f"'{shown}' is not a valid domain name: {exc}") from None
    if text.endswith("."):
        text = text[:-1]
    labels = [_to_alabel(label, shown) for label in text.split(".")]
    if len(labels) < 2:
        raise ValueError(f"'{shown}' is not a valid domain name: it needs at least two labels, like example.com")
    if labels[-1].isdigit():
        raise ValueError(f"'{shown}' is not a valid domain name: the top-level label '{labels[-1]}' is all digits")
    result = ".".join(labels)
    if len(result) > MAX_LENGTH:
        raise ValueError(f"'{shown}' is not a valid domain name: longer than {MAX_LENGTH} characters")
    return result


def _to_alabel(label: str, shown: str) -> str:
    problem = f"'{shown}' is not a valid domain name"
    if not label:
        raise ValueError(f"{problem}: it has an empty label")
    if label.isascii():
        alabel = label
        if label.startswith("xn--"):
            try:
                if idna.alabel(idna.ulabel(label)).decode("ascii") != label:
                    raise idna.IDNAError("not in canonical form")
            except idna.IDNAError as exc:
                raise ValueError(f"{problem}: label '{label}' is not valid punycode ({exc})") from None
    else:
        try:
            alabel = idna.alabel(label).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{problem}: label '{label}' is not allowed in a domain name ({exc})") from None
    if len(alabel) > MAX_LABEL:
        raise ValueError(f"{problem}: label '{label}' is longer than {MAX_LABEL} characters")
    if not _LDH.fullmatch(alabel):
        raise ValueError(
            f"{problem}: label '{label}' may only contain letters, digits and hyphens, "
            f"and must not start or end with a hyphen"
        )
    return alabel
