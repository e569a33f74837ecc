import pytest

from conduit.net.domain_names import normalize_domain_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", "example.com"),
        ("  Mail.EXAMPLE.org.  ", "mail.example.org"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # UTS #46 non-transitional: ß is kept, not mapped to ss
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("ex\u3002com", "ex.com"),  # ideographic full stop is a dot
        ("r3---sn-abc.example.com", "r3---sn-abc.example.com"),  # legal LDH host name
        ("a.b", "a.b"),
        ("1example.com", "1example.com"),
        ("example.c0m", "example.c0m"),
    ],
)
def test_normalises(raw, expected):
    assert normalize_domain_name(raw) == expected


def test_limits_are_inclusive():
    label63 = "a" * 63
    assert normalize_domain_name(f"{label63}.com") == f"{label63}.com"
    name253 = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name253) == 253
    assert normalize_domain_name(name253) == name253


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "the domain name is empty"),
        ("   ", "the domain name is empty"),
        ("com", "at least two labels"),
        ("localhost.", "at least two labels"),
        ("example..com", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("-example.com", "label '-example' may only contain"),
        ("example-.com", "label 'example-' may only contain"),
        ("exa_mple.com", "label 'exa_mple' may only contain"),
        ("exa mple.com", "label 'exa mple' may only contain"),
        ("user@example.com", "may only contain"),
        ("a" * 64 + ".com", "longer than 63"),
        (".".join(["a" * 63] * 4), "longer than 253"),
        ("example.123", "top-level label '123' is all digits"),
        ("1.2.3.4", "is an IP address"),
        ("127.1", "is an IP address"),
        ("2130706433", "is an IP address"),
        ("[::1]", "is an IP address"),
        ("::1", "is an IP address"),
        ("xn--zz.com", "label 'xn--zz' is not valid punycode"),
        ("xn--n3h.net", "not valid punycode"),  # decodes to a snowman, disallowed by IDNA 2008
        ("☃.net", "label '☃' is not allowed"),
        ("x" * 2000, "too long"),
    ],
)
def test_refuses_with_reason(raw, reason):
    with pytest.raises(ValueError, match=reason):
        normalize_domain_name(raw)


def test_message_names_the_input():
    with pytest.raises(ValueError, match=r"^'bad_name\.com' is not a valid domain name"):
        normalize_domain_name("bad_name.com")


def test_refuses_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        normalize_domain_name(None)  # type: ignore[arg-type]
