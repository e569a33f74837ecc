"""The DMARC verdict's pure parts: the author domain and conservative alignment."""

from __future__ import annotations

import pytest

from conduit.smtp.authchecks import _aligned, from_domain


def test_author_domain_comes_from_the_first_from_address():
    raw = b"From: Ann <ann@Mail.Example.ORG>\r\nTo: b@c.d\r\n\r\nFrom: body@not.this\r\n"
    assert from_domain(raw) == "mail.example.org"


def test_no_from_header_has_no_author_domain():
    assert from_domain(b"Subject: x\r\n\r\nbody") == ""


@pytest.mark.parametrize(("domain", "author", "aligned"), [
    ("example.org", "example.org", True),
    ("mail.example.org", "example.org", True),
    ("example.org", "news.example.org", True),
    ("evil-example.org", "example.org", False),
    ("example.org.evil.net", "example.org", False),
    ("", "example.org", False),
])
def test_alignment_never_pairs_unrelated_domains(domain, author, aligned):
    assert _aligned(domain, author) is aligned
