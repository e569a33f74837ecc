import ipaddress

import pytest

from conduit.net.addresses import ip_allowed, is_forbidden_target, parse_host_ip, parse_ip_list

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", V4("127.0.0.1")),
        ("8.8.8.8", V4("8.8.8.8")),
        ("2130706433", V4("127.0.0.1")),  # decimal
        ("0177.0.0.1", V4("127.0.0.1")),  # octal part
        ("0x7f.1", V4("127.0.0.1")),  # hex part, short form
        ("0x7F000001", V4("127.0.0.1")),
        ("127.1", V4("127.0.0.1")),  # short form
        ("10.1.258", V4("10.1.1.2")),  # last part fills the remaining bytes
        ("127.0.0.1.", V4("127.0.0.1")),  # trailing dot
        (" 10.0.0.1 ", V4("10.0.0.1")),
        ("::1", V6("::1")),
        ("[::1]", V6("::1")),
        ("[fe80::1%eth0]", V6("fe80::1")),  # zone id dropped
        ("fe80::1%25eth0", V6("fe80::1")),  # percent-encoded zone as in URLs
        ("::ffff:127.0.0.1", V6("::ffff:7f00:1")),
    ],
)
def test_parse_host_ip_recognises_literals(host, expected):
    assert parse_host_ip(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "cafe.be",
        "add.bed",
        "1.2.3.4.5",
        "256.1.1.1",
        "4294967296",
        "08.1.1.1",
        "",
        "[",
        "::g",
        "1e100.net",
    ],
)
def test_parse_host_ip_returns_none_for_names_and_junk(host):
    assert parse_host_ip(host) is None


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",  # multicast: is_global says True on Python 3.11
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",  # site-local: is_global says True on Python 3.11
        "ff02::1",
        "ff0e::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "::8.8.8.8",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::1",  # local-use NAT64 prefix
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001::1",  # Teredo
        "2001:db8::1",
        "0x7f.1",  # string forms are parsed like host names
        "2130706433",
    ],
)
def test_forbidden_targets(ip):
    assert is_forbidden_target(ip) is True


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_targets_are_allowed(ip):
    assert is_forbidden_target(ip) is False


def test_forbidden_target_accepts_address_objects():
    assert is_forbidden_target(V4("10.9.8.7")) is True
    assert is_forbidden_target(V6("2606:4700::1")) is False


def test_forbidden_target_rejects_host_names():
    with pytest.raises(ValueError, match=r"'example\.com' is not an IP address"):
        is_forbidden_target("example.com")


def test_parse_ip_list_accepts_addresses_and_networks_with_any_separator():
    networks = parse_ip_list("10.0.0.0/8, 192.168.1.5\n2001:db8::/32 ,,  ::1")
    assert networks == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("::1/128"),
    ]


def test_parse_ip_list_empty_and_duplicates():
    assert parse_ip_list("") == []
    assert parse_ip_list("  \n ") == []
    assert parse_ip_list("10.0.0.1, 10.0.0.1/32") == [ipaddress.ip_network("10.0.0.1/32")]


def test_parse_ip_list_refuses_host_bits_and_suggests_the_network():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' has host bits set.*'10\.0\.0\.0/8'"):
        parse_ip_list("10.0.0.1/8")


@pytest.mark.parametrize("entry", ["example.com", "10.0.0.256", "127.1", "10.0.0.0/33", "1.2.3.4/x", "::1/129"])
def test_parse_ip_list_names_the_bad_entry(entry):
    with pytest.raises(ValueError, match=f"'{entry}' is not an IP address or CIDR network"):
        parse_ip_list(f"10.0.0.0/8, {entry}")


def test_ip_allowed():
    networks = parse_ip_list("10.0.0.0/8, 2001:db8::/32")
    assert ip_allowed("10.20.30.40", networks)
    assert ip_allowed("2001:db8::5", networks)
    assert ip_allowed("::ffff:10.1.2.3", networks)  # dual-stack socket view of an IPv4 peer
    assert not ip_allowed("11.0.0.1", networks)
    assert not ip_allowed("2001:db9::1", networks)
    assert not ip_allowed("not an ip", networks)
    assert not ip_allowed("", networks)


def test_ip_allowed_with_no_networks_means_unrestricted():
    assert ip_allowed("203.0.113.9", [])
