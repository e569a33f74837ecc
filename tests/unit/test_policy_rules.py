import ipaddress

import pytest

from conduit.services.policy_rules import (
    ACCEPT,
    DkimResult,
    PolicyDecision,
    PolicyRules,
    SmtpFacts,
    evaluate,
    parse_domain_list,
    parse_smtp_credentials,
)

# -- parsing -------------------------------------------------------------------------


def test_parse_domain_list():
    assert parse_domain_list("Example.com, mail.example.org\nBücher.example  example.com,") == [
        "example.com",
        "mail.example.org",
        "xn--bcher-kva.example",
    ]


@pytest.mark.parametrize("value", ["", None, " , \n"])
def test_parse_domain_list_empty(value):
    assert parse_domain_list(value) == []


def test_parse_domain_list_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"'bad_domain\.com' is not a valid domain name"):
        parse_domain_list("example.com, bad_domain.com")


def test_parse_smtp_credentials_splits_at_the_first_colon():
    assert parse_smtp_credentials("relay:pa:ss:word:long") == ("relay", "pa:ss:word:long")
    assert parse_smtp_credentials("u:password-123") == ("u", "password-123")
    assert parse_smtp_credentials("user:with a space in it") == ("user", "with a space in it")


def test_parse_smtp_credentials_length_limits_are_inclusive():
    assert parse_smtp_credentials("u" * 64 + ":" + "p" * 256) == ("u" * 64, "p" * 256)
    assert parse_smtp_credentials("u:" + "p" * 12) == ("u", "p" * 12)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("nocolon", "must be 'username:password'"),
        (":password", "username .* is empty"),
        ("user:", "password .* is empty"),
        ("user:p", "password must be at least 12 characters"),
        ("user:" + "p" * 11, "password must be at least 12 characters"),
        ("us er:password", "must not contain spaces"),
        ("us\ter:password", "must not contain spaces"),
        ("us\x00er:password", "must not contain spaces"),
        ("u" * 65 + ":password-123", "username is longer than 64"),
        ("user:" + "p" * 257, "password is longer than 256"),
        ("user:pass\x00word-1234", "must not contain control characters"),
        ("user:pass\r\nword-1234", "must not contain control characters"),
    ],
)
def test_parse_smtp_credentials_refusals(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_smtp_credentials(value)


def test_parse_smtp_credentials_errors_never_show_the_password():
    with pytest.raises(ValueError) as caught:
        parse_smtp_credentials("user:" + "secret-" * 40)
    assert "secret" not in str(caught.value)


def test_parse_smtp_credentials_refuses_non_strings():
    with pytest.raises(ValueError, match="username:password"):
        parse_smtp_credentials(None)  # type: ignore[arg-type]


def test_rules_from_stored_columns():
    rules = PolicyRules.from_stored(
        require_smtp_auth=True,
        smtp_username="relay",
        allowed_source_ips="10.0.0.0/8, 2001:db8::1",
        require_spf=True,
        allowed_spf_domains="Example.com",
        require_dkim=True,
        allowed_dkim_domains="example.com, example.org",
    )
    assert rules == PolicyRules(
        require_smtp_auth=True,
        smtp_username="relay",
        allowed_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::1/128")),
        require_spf=True,
        allowed_spf_domains=("example.com",),
        require_dkim=True,
        allowed_dkim_domains=("example.com", "example.org"),
    )


def test_rules_from_stored_with_empty_lists():
    rules = PolicyRules.from_stored(allowed_source_ips=None, allowed_spf_domains="", allowed_dkim_domains=None)
    assert rules == PolicyRules()


def test_rules_from_stored_reports_bad_entries():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' has host bits set"):
        PolicyRules.from_stored(allowed_source_ips="10.0.0.1/8")


# -- evaluation helpers ----------------------------------------------------------------


def facts(**overrides):
    base = {
        "peer_ip": "192.0.2.10",
        "auth_user": None,
        "auth_ok": False,
        "spf_result": None,
        "spf_domain": None,
        "dkim": None,
    }
    base.update(overrides)
    return SmtpFacts(**base)


def assert_refused(decision, check, code, enhanced, text, reason_fragment):
    assert decision.accepted is False
    assert (decision.check, decision.reply_code, decision.enhanced, decision.reply_text) == (
        check,
        code,
        enhanced,
        text,
    )
    assert reason_fragment in decision.reason
    assert decision.smtp_reply == f"{code} {enhanced} {text}"


# -- no policy ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_empty_policy_accepts_anything(stage):
    decision = evaluate(PolicyRules(), facts(), stage=stage)
    assert decision == ACCEPT
    assert decision.accepted and decision.smtp_reply is None and decision.reason is None


def test_unknown_stage_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown policy stage 'mail'"):
        evaluate(PolicyRules(), facts(), stage="mail")  # type: ignore[arg-type]


# -- source IP ------------------------------------------------------------------------------


IP_RULES = PolicyRules(allowed_networks=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")))


@pytest.mark.parametrize("peer", ["192.0.2.10", "2001:db8::25", "::ffff:192.0.2.99"])
def test_source_ip_allowed(peer):
    assert evaluate(IP_RULES, facts(peer_ip=peer), stage="rcpt").accepted


@pytest.mark.parametrize("peer", ["198.51.100.1", "2001:db9::1", "", "garbage"])
def test_source_ip_refused(peer):
    decision = evaluate(IP_RULES, facts(peer_ip=peer), stage="rcpt")
    assert_refused(
        decision, "source_ip", 550, "5.7.1", "source IP not allowed", "is not in the policy's allowed source IPs"
    )


def test_source_ip_refusal_names_the_peer():
    decision = evaluate(IP_RULES, facts(peer_ip="198.51.100.1"), stage="rcpt")
    assert decision.reason == "connection from 198.51.100.1 is not in the policy's allowed source IPs"


def test_source_ip_is_not_rechecked_at_data():
    assert evaluate(IP_RULES, facts(peer_ip="198.51.100.1"), stage="data").accepted


# -- SMTP AUTH ------------------------------------------------------------------------------


AUTH_RULES = PolicyRules(require_smtp_auth=True, smtp_username="relay")


def test_auth_as_the_policy_user_is_accepted():
    assert evaluate(AUTH_RULES, facts(auth_user="relay", auth_ok=True), stage="rcpt").accepted


def test_auth_not_attempted():
    decision = evaluate(AUTH_RULES, facts(), stage="rcpt")
    assert_refused(decision, "smtp_auth", 530, "5.7.0", "Authentication required", "did not authenticate")


def test_auth_failed():
    decision = evaluate(AUTH_RULES, facts(auth_user="relay", auth_ok=False), stage="rcpt")
    assert_refused(decision, "smtp_auth", 530, "5.7.0", "Authentication required", "authentication as 'relay' failed")


def test_auth_as_another_user():
    decision = evaluate(AUTH_RULES, facts(auth_user="other", auth_ok=True), stage="rcpt")
    assert_refused(
        decision,
        "smtp_auth",
        530,
        "5.7.0",
        "Authentication required",
        "authenticated as 'other', but the policy requires 'relay'",
    )


def test_auth_user_comparison_is_exact():
    decision = evaluate(AUTH_RULES, facts(auth_user="Relay", auth_ok=True), stage="rcpt")
    assert decision.check == "smtp_auth"


def test_auth_required_without_configured_credentials_fails_closed():
    rules = PolicyRules(require_smtp_auth=True, smtp_username=None)
    decision = evaluate(rules, facts(auth_user="anyone", auth_ok=True), stage="rcpt")
    assert_refused(decision, "smtp_auth", 530, "5.7.0", "Authentication required", "no credentials configured")


def test_auth_not_required_ignores_auth_facts():
    rules = PolicyRules(smtp_username="relay")
    assert evaluate(rules, facts(auth_user="other", auth_ok=False), stage="rcpt").accepted


def test_source_ip_is_checked_before_auth():
    rules = PolicyRules(require_smtp_auth=True, smtp_username="relay", allowed_networks=IP_RULES.allowed_networks)
    assert evaluate(rules, facts(peer_ip="198.51.100.1"), stage="rcpt").check == "source_ip"


# -- SPF ------------------------------------------------------------------------------------


SPF_ANY = PolicyRules(require_spf=True)
SPF_LISTED = PolicyRules(require_spf=True, allowed_spf_domains=("example.com", "partner.org"))


@pytest.mark.parametrize("result", ["pass", "PASS", " Pass "])
def test_spf_pass_with_any_domain(result):
    assert evaluate(SPF_ANY, facts(spf_result=result, spf_domain="whatever.net"), stage="rcpt").accepted


def test_spf_pass_without_domain_is_fine_when_no_list():
    assert evaluate(SPF_ANY, facts(spf_result="pass"), stage="rcpt").accepted


@pytest.mark.parametrize("result", ["fail", "softfail", "neutral", "none", "permerror"])
def test_spf_non_pass_results(result):
    decision = evaluate(SPF_ANY, facts(spf_result=result, spf_domain="example.com"), stage="rcpt")
    assert_refused(decision, "spf", 550, "5.7.23", "SPF check failed", f"SPF result for example.com is '{result}'")


def test_spf_temperror_is_temporary():
    decision = evaluate(SPF_ANY, facts(spf_result="temperror", spf_domain="example.com"), stage="rcpt")
    assert_refused(decision, "spf", 451, "4.7.24", "SPF temporary error, try again later", "temporary DNS error")


@pytest.mark.parametrize("result", [None, ""])
def test_spf_not_evaluated_is_a_failure(result):
    decision = evaluate(SPF_ANY, facts(spf_result=result), stage="rcpt")
    assert_refused(decision, "spf", 550, "5.7.23", "SPF check failed", "SPF was not evaluated")


@pytest.mark.parametrize("domain", ["example.com", "EXAMPLE.COM.", "bounces.example.com", "a.b.partner.org"])
def test_spf_allowed_domain_or_subdomain(domain):
    assert evaluate(SPF_LISTED, facts(spf_result="pass", spf_domain=domain), stage="rcpt").accepted


@pytest.mark.parametrize("domain", ["notexample.com", "example.com.evil.net", "example.org", "bad_name"])
def test_spf_domain_not_allowed(domain):
    decision = evaluate(SPF_LISTED, facts(spf_result="pass", spf_domain=domain), stage="rcpt")
    assert_refused(decision, "spf", 550, "5.7.23", "SPF check failed", f"SPF passed for {domain}, which is not among")


def test_spf_domain_missing_with_list():
    decision = evaluate(SPF_LISTED, facts(spf_result="pass", spf_domain=None), stage="rcpt")
    assert_refused(decision, "spf", 550, "5.7.23", "SPF check failed", "an unknown domain")


def test_spf_not_required_ignores_failures():
    assert evaluate(PolicyRules(allowed_spf_domains=("example.com",)), facts(spf_result="fail"), stage="rcpt").accepted


def test_auth_is_checked_before_spf():
    rules = PolicyRules(require_smtp_auth=True, smtp_username="relay", require_spf=True)
    assert evaluate(rules, facts(spf_result="fail"), stage="rcpt").check == "smtp_auth"


def test_spf_is_not_checked_at_data():
    assert evaluate(SPF_ANY, facts(spf_result="fail"), stage="data").accepted


def test_all_rcpt_checks_pass_together():
    rules = PolicyRules(
        require_smtp_auth=True,
        smtp_username="relay",
        allowed_networks=IP_RULES.allowed_networks,
        require_spf=True,
        allowed_spf_domains=("example.com",),
    )
    good = facts(auth_user="relay", auth_ok=True, spf_result="pass", spf_domain="example.com")
    assert evaluate(rules, good, stage="rcpt") == ACCEPT


# -- DKIM -----------------------------------------------------------------------------------


DKIM_ANY = PolicyRules(require_dkim=True)
DKIM_LISTED = PolicyRules(require_dkim=True, allowed_dkim_domains=("example.com",))


def test_dkim_any_valid_signature():
    signatures = (DkimResult("other.net", False), DkimResult("whatever.org", True))
    assert evaluate(DKIM_ANY, facts(dkim=signatures), stage="data").accepted


@pytest.mark.parametrize("domain", ["example.com", "Mail.Example.com"])
def test_dkim_allowed_domain_or_subdomain(domain):
    signatures = (DkimResult("esp.net", True), DkimResult(domain, True))
    assert evaluate(DKIM_LISTED, facts(dkim=signatures), stage="data").accepted


def test_dkim_not_evaluated_is_a_failure():
    decision = evaluate(DKIM_ANY, facts(dkim=None), stage="data")
    assert_refused(decision, "dkim", 550, "5.7.20", "no valid DKIM signature from an allowed domain", "not evaluated")


def test_dkim_unsigned():
    decision = evaluate(DKIM_ANY, facts(dkim=()), stage="data")
    assert_refused(
        decision, "dkim", 550, "5.7.20", "no valid DKIM signature from an allowed domain", "has no DKIM signature"
    )


def test_dkim_no_valid_signature():
    signatures = (DkimResult("example.com", False), DkimResult("b.net", False))
    decision = evaluate(DKIM_LISTED, facts(dkim=signatures), stage="data")
    assert decision.check == "dkim"
    assert decision.reason == "no DKIM signature verified (signed by b.net, example.com)"


def test_dkim_valid_but_not_from_an_allowed_domain():
    signatures = (DkimResult("example.com", False), DkimResult("esp.net", True), DkimResult("notexample.com", True))
    decision = evaluate(DKIM_LISTED, facts(dkim=signatures), stage="data")
    assert_refused(
        decision,
        "dkim",
        550,
        "5.7.20",
        "no valid DKIM signature from an allowed domain",
        "valid DKIM signatures are from esp.net, notexample.com, none of which is among the allowed DKIM domains",
    )


def test_dkim_not_checked_at_rcpt():
    assert evaluate(DKIM_ANY, facts(dkim=None), stage="rcpt").accepted


def test_dkim_not_required_ignores_missing_signatures():
    assert evaluate(PolicyRules(allowed_dkim_domains=("example.com",)), facts(dkim=()), stage="data").accepted


def test_decision_is_frozen():
    decision = PolicyDecision(accepted=True)
    with pytest.raises(AttributeError):
        decision.accepted = False  # type: ignore[misc]
