import base64

import pytest
from standardwebhooks import Webhook

from conduit.mail.addresses import split_plus
from conduit.services.webhook_rules import (
    WebhookAddress,
    generate_webhook_secret,
    parse_webhook_address,
    validate_custom_headers,
    validate_secret,
    validate_target_url,
)

# -- addresses -------------------------------------------------------------------


def test_parse_address_normalises_case_and_domain():
    parsed = parse_webhook_address("  Orders.Team@Bücher.Example. ")
    assert parsed == WebhookAddress(local="orders.team", domain="xn--bcher-kva.example", is_catch_all=False)
    assert parsed.address == "orders.team@xn--bcher-kva.example"


def test_parse_catch_all():
    parsed = parse_webhook_address("*@Example.com")
    assert parsed == WebhookAddress(local="*", domain="example.com", is_catch_all=True)


def test_parse_address_accepts_rfc5321_atext():
    assert parse_webhook_address("a!#$%&'/=?^_`{|}~-z@example.com").local == "a!#$%&'/=?^_`{|}~-z"


def test_local_part_of_64_characters_is_the_limit():
    assert parse_webhook_address("a" * 64 + "@example.com").local == "a" * 64
    with pytest.raises(ValueError, match="longer than 64"):
        parse_webhook_address("a" * 65 + "@example.com")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("no-at-sign.example.com", "must look like name@example.com"),
        ("@example.com", "must look like name@example.com"),
        ("name+tag@example.com", r"'\+' is not allowed"),
        ("a*b@example.com", r"'\*' is only allowed alone"),
        ("**@example.com", r"'\*' is only allowed alone"),
        (".name@example.com", "separated by single dots"),
        ("name.@example.com", "separated by single dots"),
        ("na..me@example.com", "separated by single dots"),
        ('"quoted"@example.com', "separated by single dots"),
        ("na me@example.com", "separated by single dots"),
        ("jürgen@example.com", "separated by single dots"),
        ("a@b@example.com", "separated by single dots"),
        ("name@localhost", "at least two labels"),
        ("name@", "the domain name is empty"),
        ("name@[127.0.0.1]", "is an IP address"),
    ],
)
def test_parse_address_refusals(address, reason):
    with pytest.raises(ValueError, match=reason):
        parse_webhook_address(address)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("orders", ("orders", None)),
        ("orders+2024", ("orders", "2024")),
        ("orders+a+b", ("orders", "a+b")),
        ("orders+", ("orders", "")),
        ("+tag", ("+tag", None)),
        ("Orders+Tag", ("Orders", "Tag")),
    ],
)
def test_split_plus(local, expected):
    assert split_plus(local) == expected


# -- target URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/in", "https://hooks.example.com/in"),
        ("HTTPS://Hooks.EXAMPLE.com", "https://hooks.example.com/"),
        ("http://example.com:80/a?b=c#fragment", "http://example.com/a?b=c"),
        ("https://example.com:443/", "https://example.com/"),
        ("https://example.com:8443/x?y=1&z=%20", "https://example.com:8443/x?y=1&z=%20"),
        ("https://bücher.example/ä?q=ü", "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"),
        ("http://0x7f.1:9000/hook", "http://127.0.0.1:9000/hook"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://[::1]:8080", "http://[::1]:8080/"),
        ("http://[fe80::1%25eth0]/", "http://[fe80::1]/"),
        ("http://localhost:8000/h", "http://localhost:8000/h"),
        ("http://my_service:8080/h", "http://my_service:8080/h"),
        ("http://example.com./x", "http://example.com/x"),
    ],
)
def test_validate_target_url_normalises(url, expected):
    assert validate_target_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "is empty"),
        ("example.com/hook", "must start with http:// or https://"),
        ("ftp://example.com/", "must start with http:// or https://"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("http:///path", "has no host"),
        ("http://:80/", "has no host"),
        ("https://user:pw@example.com/", "must not contain user:password@"),
        ("https://user@example.com/", "must not contain user:password@"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com:65536/", "invalid port"),
        ("http://example.com:http/", "invalid port"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("http://[::1/", "is not a valid URL"),
        ("http://a..b/", "invalid host name"),
        ("http://-bad.example/", "invalid host name"),
        ("http://☃.net/", "invalid host name"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_validate_target_url_refusals(url, reason):
    with pytest.raises(ValueError, match=reason):
        validate_target_url(url)


def test_url_of_exactly_2048_characters_is_accepted():
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    assert validate_target_url(url) == url


# -- secrets ---------------------------------------------------------------------


def test_generated_secret_is_standard_webhooks_format_and_random():
    secret = generate_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert secret != generate_webhook_secret()
    assert validate_secret(secret) == secret
    Webhook(secret)  # a Standard Webhooks library accepts it as is


def test_validate_secret_accepts_printable_ascii():
    assert validate_secret("a" * 24) == "a" * 24
    assert validate_secret("!~" * 128) == "!~" * 128


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * 23, "24 to 256"),
        ("a" * 257, "24 to 256"),
        ("a" * 20 + " bcd", "printable ASCII"),
        ("a" * 20 + "\tbcd", "printable ASCII"),
        ("a" * 20 + "ééé€", "printable ASCII"),
        ("whsec_" + "!" * 30, "must be base64"),
        ("whsec_" + base64.b64encode(b"short").decode() + "A" * 16, "must be base64"),
        ("whsec_" + base64.b64encode(b"x" * 15).decode(), "at least 16 bytes"),
    ],
)
def test_validate_secret_refusals(secret, reason):
    with pytest.raises(ValueError, match=reason):
        validate_secret(secret)


def test_validate_secret_accepts_unpadded_whsec():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("=")
    assert validate_secret(secret) == secret


# -- custom headers --------------------------------------------------------------


def test_custom_headers_accepted_and_trimmed():
    headers = {"Authorization": " Bearer abc ", "X-Team": "ops\tteam", "x-empty": ""}
    assert validate_custom_headers(headers) == {"Authorization": "Bearer abc", "X-Team": "ops\tteam", "x-empty": ""}


def test_custom_headers_limits_are_inclusive():
    assert len(validate_custom_headers({f"X-H{i}": "v" for i in range(20)})) == 20
    assert validate_custom_headers({"X" * 64: "v" * 1024}) == {"X" * 64: "v" * 1024}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({f"X-H{i}": "v" for i in range(21)}, "at most 20"),
        ({"X" * 65: "v"}, "is invalid"),
        ({"": "v"}, "is invalid"),
        ({"Bad Header": "v"}, "'Bad Header' is invalid"),
        ({"X-Colon:": "v"}, "is invalid"),
        ({"X-Ünï": "v"}, "is invalid"),
        ({"Host": "evil"}, "'Host' is set by Conduit"),
        ({"content-length": "1"}, "set by Conduit"),
        ({"Transfer-Encoding": "chunked"}, "set by Conduit"),
        ({"CONNECTION": "close"}, "set by Conduit"),
        ({"Content-Type": "text/plain"}, "set by Conduit"),
        ({"Webhook-Signature": "v1,x"}, "set by Conduit"),
        ({"webhook-id": "x"}, "set by Conduit"),
        ({"X-A": "1", "x-a": "2"}, "'x-a' is given twice"),
        ({"X-A": "line\r\nX-Injected: 1"}, "control characters"),
        ({"X-A": "nul\x00"}, "control characters"),
        ({"X-A": "v" * 1025}, "longer than 1024"),
        ({"X-A": 5}, "string value"),
        ({5: "v"}, "is invalid"),
    ],
)
def test_custom_headers_refusals(headers, reason):
    with pytest.raises(ValueError, match=reason):
        validate_custom_headers(headers)


def test_custom_headers_must_be_a_dict():
    with pytest.raises(ValueError, match="must be an object"):
        validate_custom_headers([("X-A", "1")])  # type: ignore[arg-type]
