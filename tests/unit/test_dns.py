import ipaddress
import time
from pathlib import Path

import dns.nameserver
import dns.resolver
import pytest

from conduit.net.dns import (
    DnsLookupError,
    lookup_mx,
    lookup_txt,
    make_resolver,
    parse_dns_servers,
    resolve_addresses,
)
from tests.support.dns_server import LoopbackDNS

# -- parse_dns_servers ---------------------------------------------------------


def test_parse_dns_servers_examples():
    assert parse_dns_servers("127.0.0.1:5353, 10.0.0.1, [::1]:53") == [
        ("127.0.0.1", 5353),
        ("10.0.0.1", 53),
        ("::1", 53),
    ]


def test_parse_dns_servers_bare_and_bracketed_ipv6():
    assert parse_dns_servers("::1, [2001:db8::53], [2001:db8::1]:5300") == [
        ("::1", 53),
        ("2001:db8::53", 53),
        ("2001:db8::1", 5300),
    ]


def test_parse_dns_servers_empty_and_blank_entries():
    assert parse_dns_servers("") == []
    assert parse_dns_servers(" , ") == []
    assert parse_dns_servers("10.0.0.1,") == [("10.0.0.1", 53)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dns.example.com", "'dns.example.com' is not an IP address"),
        ("10.0.0.1:0", "'10.0.0.1:0' has an invalid port"),
        ("10.0.0.1:65536", "'10.0.0.1:65536' has an invalid port"),
        ("10.0.0.1:", "'10.0.0.1:' has an invalid port"),
        ("10.0.0.1:abc", "'10.0.0.1:abc' has an invalid port"),
        ("[::1", r"'\[::1' is malformed"),
        ("[::1]x", r"'\[::1\]x' is malformed"),
        ("[10.0.0.300]:53", r"'\[10.0.0.300\]:53' is not an IP address"),
        ("127.1", "'127.1' is not an IP address"),
    ],
)
def test_parse_dns_servers_errors_name_the_entry(value, message):
    with pytest.raises(ValueError, match=message):
        parse_dns_servers(f"10.0.0.1, {value}")


# -- make_resolver -------------------------------------------------------------


def test_make_resolver_uses_exactly_the_given_servers():
    resolver = make_resolver([("127.0.0.1", 5353), ("::1", 53)], timeout=1.5)
    servers = [(ns.address, ns.port) for ns in resolver.nameservers]
    assert servers == [("127.0.0.1", 5353), ("::1", 53)]
    assert all(isinstance(ns, dns.nameserver.Do53Nameserver) for ns in resolver.nameservers)
    assert resolver.lifetime == 1.5
    assert resolver.cache is None


@pytest.mark.skipif(not Path("/etc/resolv.conf").exists(), reason="no system resolver configuration")
def test_make_resolver_without_servers_reads_the_system_configuration():
    system = dns.resolver.Resolver()
    resolver = make_resolver([], timeout=4)
    assert [str(ns) for ns in resolver.nameservers] == [str(ns) for ns in system.nameservers]
    assert resolver.lifetime == 4
    assert resolver.cache is None


# -- lookups against a real server ---------------------------------------------


async def test_lookup_txt(dns_server):
    dns_server.add("_conduit-verify.example.com", "TXT", "conduit-verify=abc123")
    dns_server.add("_conduit-verify.example.com", "TXT", "other")
    resolver = make_resolver(dns_server.servers)
    assert sorted(await lookup_txt(resolver, "_conduit-verify.example.com")) == ["conduit-verify=abc123", "other"]


async def test_lookup_txt_joins_character_strings(dns_server):
    dns_server.add("example.com", "TXT", ["v=spf1 ", "-all"])
    assert await lookup_txt(make_resolver(dns_server.servers), "example.com") == ["v=spf1 -all"]


async def test_large_answer_is_retried_over_tcp(dns_server):
    long_text = "x" * 1000
    dns_server.add("big.example.com", "TXT", long_text)
    assert await lookup_txt(make_resolver(dns_server.servers), "big.example.com") == [long_text]
    assert ("big.example.com.", "TXT", "tcp") in dns_server.queries


async def test_lookup_mx_sorted_lowercase_without_trailing_dot(dns_server):
    dns_server.add("example.com", "MX", "20 Backup.Example.NET")
    dns_server.add("example.com", "MX", "10 mx.conduit.email")
    resolver = make_resolver(dns_server.servers)
    assert await lookup_mx(resolver, "example.com") == [(10, "mx.conduit.email"), (20, "backup.example.net")]


async def test_lookup_mx_null_mx(dns_server):
    dns_server.add("nomail.example.com", "MX", "0 .")
    assert await lookup_mx(make_resolver(dns_server.servers), "nomail.example.com") == [(0, "")]


async def test_lookup_follows_cname(dns_server):
    dns_server.add("alias.example.com", "CNAME", "target.example.com")
    dns_server.add("target.example.com", "TXT", "hello")
    assert await lookup_txt(make_resolver(dns_server.servers), "alias.example.com") == ["hello"]


async def test_nxdomain(dns_server):
    resolver = make_resolver(dns_server.servers)
    with pytest.raises(DnsLookupError) as caught:
        await lookup_txt(resolver, "missing.example.com")
    error = caught.value
    assert str(error) == "TXT lookup for missing.example.com failed: no such domain (NXDOMAIN)"
    assert (error.kind, error.name, error.rdtype, error.temporary) == ("nxdomain", "missing.example.com", "TXT", False)
    assert isinstance(error, ValueError)


async def test_no_records_of_that_type(dns_server):
    dns_server.add("example.com", "TXT", "only text")
    with pytest.raises(DnsLookupError,
                       match=r"MX lookup for example\.com failed: the name has no MX records") as caught:
        await lookup_mx(make_resolver(dns_server.servers), "example.com")
    assert caught.value.kind == "no_records"


async def test_parent_of_a_record_exists_without_records(dns_server):
    dns_server.add("_conduit-verify.example.com", "TXT", "token")
    with pytest.raises(DnsLookupError) as caught:
        await lookup_txt(make_resolver(dns_server.servers), "example.com")
    assert caught.value.kind == "no_records"


async def test_servfail(dns_server):
    dns_server.set_behaviour("broken.example.com", "servfail")
    with pytest.raises(DnsLookupError, match=r"failed to answer \(SERVFAIL\)") as caught:
        await lookup_txt(make_resolver(dns_server.servers), "broken.example.com")
    assert caught.value.kind == "servfail"
    assert caught.value.temporary


async def test_timeout_is_bounded_by_the_lifetime(dns_server):
    dns_server.set_behaviour("slow.example.com", "timeout")
    started = time.monotonic()
    with pytest.raises(DnsLookupError, match=r"within 0.5 s \(timeout\)") as caught:
        await lookup_txt(make_resolver(dns_server.servers, timeout=0.5), "slow.example.com")
    assert time.monotonic() - started < 2
    assert caught.value.kind == "timeout"
    assert caught.value.temporary


async def test_behaviour_can_be_reset(dns_server):
    dns_server.add("flaky.example.com", "TXT", "ok")
    dns_server.set_behaviour("flaky.example.com", "servfail")
    dns_server.set_behaviour("flaky.example.com", None)
    assert await lookup_txt(make_resolver(dns_server.servers), "flaky.example.com") == ["ok"]


async def test_no_caching_sees_new_records_immediately(dns_server):
    resolver = make_resolver(dns_server.servers)
    with pytest.raises(DnsLookupError):
        await lookup_txt(resolver, "fresh.example.com")
    dns_server.add("fresh.example.com", "TXT", "now here")
    assert await lookup_txt(resolver, "fresh.example.com") == ["now here"]
    dns_server.clear()
    with pytest.raises(DnsLookupError, match="NXDOMAIN"):
        await lookup_txt(resolver, "fresh.example.com")


async def test_second_server_answers_when_first_is_dead(dns_server):
    with LoopbackDNS() as dead:
        dead_port = dead.port
    dns_server.add("example.com", "TXT", "alive")
    resolver = make_resolver([("127.0.0.1", dead_port), *dns_server.servers], timeout=2)
    assert await lookup_txt(resolver, "example.com") == ["alive"]


async def test_invalid_name():
    resolver = make_resolver([("127.0.0.1", 9)])
    with pytest.raises(DnsLookupError, match="not a valid DNS name") as caught:
        await lookup_txt(resolver, "a..b")
    assert caught.value.kind == "invalid_name"


# -- resolve_addresses -----------------------------------------------------------


async def test_resolve_addresses_both_families(dns_server):
    dns_server.add("www.example.com", "A", "192.0.2.10")
    dns_server.add("www.example.com", "A", "192.0.2.11")
    dns_server.add("www.example.com", "AAAA", "2001:db8::10")
    addresses = await resolve_addresses(make_resolver(dns_server.servers), "www.example.com")
    assert sorted(addresses, key=str) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("192.0.2.11"),
        ipaddress.ip_address("2001:db8::10"),
    ]


async def test_resolve_addresses_one_family_is_enough(dns_server):
    dns_server.add("v4.example.com", "A", "198.51.100.7")
    dns_server.add("v6.example.com", "AAAA", "2001:db8::7")
    resolver = make_resolver(dns_server.servers)
    assert await resolve_addresses(resolver, "v4.example.com") == [ipaddress.ip_address("198.51.100.7")]
    assert await resolve_addresses(resolver, "v6.example.com") == [ipaddress.ip_address("2001:db8::7")]


async def test_resolve_addresses_via_cname_pointing_inside(dns_server):
    dns_server.add("hook.example.com", "CNAME", "internal.example.com")
    dns_server.add("internal.example.com", "A", "10.0.0.5")
    assert await resolve_addresses(make_resolver(dns_server.servers), "hook.example.com") == [
        ipaddress.ip_address("10.0.0.5")
    ]


async def test_resolve_addresses_ip_literal_skips_dns(dns_server):
    resolver = make_resolver(dns_server.servers)
    assert await resolve_addresses(resolver, "0x7f.1") == [ipaddress.ip_address("127.0.0.1")]
    assert await resolve_addresses(resolver, "[::1]") == [ipaddress.ip_address("::1")]
    assert dns_server.queries == []


async def test_resolve_addresses_no_records(dns_server):
    dns_server.add("textonly.example.com", "TXT", "x")
    with pytest.raises(
        DnsLookupError, match=r"A/AAAA lookup for textonly\.example\.com failed: the name has no A or AAAA"
    ):
        await resolve_addresses(make_resolver(dns_server.servers), "textonly.example.com")


async def test_resolve_addresses_nxdomain(dns_server):
    with pytest.raises(DnsLookupError, match="NXDOMAIN") as caught:
        await resolve_addresses(make_resolver(dns_server.servers), "nothing.example.com")
    assert caught.value.kind == "nxdomain"


async def test_resolve_addresses_servfail_beats_no_records(dns_server):
    dns_server.set_behaviour("down.example.com", "servfail")
    with pytest.raises(DnsLookupError) as caught:
        await resolve_addresses(make_resolver(dns_server.servers), "down.example.com")
    assert caught.value.kind == "servfail"
