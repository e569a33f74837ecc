"""rspamd's answer → a verdict, and a verdict under a policy → the SMTP decision (pure)."""

from __future__ import annotations

import pytest

from conduit.net.rspamd import RspamdUnavailable, SpamVerdict, parse_verdict
from conduit.services.policy_rules import ACCEPT, PolicyRules, judge_spam

REJECTING = PolicyRules(spam_action="reject")


def _verdict(action: str, score: float, required: float = 15.0) -> SpamVerdict:
    return SpamVerdict(action=action, score=score, required_score=required)


def test_an_answer_becomes_a_verdict_with_symbols_highest_first():
    verdict = parse_verdict({"is_skipped": False, "score": 5.2, "required_score": 7, "action": "add header",
                             "symbols": {"DATE_IN_PAST": {"name": "DATE_IN_PAST", "score": 0.1},
                                         "FORGED_SENDER": {"name": "FORGED_SENDER", "score": 5},
                                         "FUZZY_DENIED": {"name": "FUZZY_DENIED", "score": 0, "options": ["1: 1.00"]},
                                         "NEGATIVE": {"name": "NEGATIVE", "score": -1.5}}})
    assert verdict == SpamVerdict(action="add header", score=5.2, required_score=7.0, symbols=(
        ("FORGED_SENDER", 5.0), ("DATE_IN_PAST", 0.1), ("FUZZY_DENIED", 0.0), ("NEGATIVE", -1.5)))
    assert verdict.as_payload() == {
        "score": 5.2, "required_score": 7.0, "action": "add header",
        "symbols": [{"name": "FORGED_SENDER", "score": 5.0}, {"name": "DATE_IN_PAST", "score": 0.1},
                    {"name": "FUZZY_DENIED", "score": 0.0}, {"name": "NEGATIVE", "score": -1.5}]}


@pytest.mark.parametrize("answer", [
    [], "reject", {"action": "reject"}, {"action": "burn", "score": 1}, {"action": "reject", "score": "15"},
    {"action": "reject", "score": float("nan")}, {"action": "reject", "score": True},
])
def test_an_answer_that_is_no_verdict_is_refused(answer):
    with pytest.raises(RspamdUnavailable):
        parse_verdict(answer)


def test_an_unavailable_verdict_has_no_score():
    assert SpamVerdict.unavailable().as_payload() == {"score": None, "required_score": None, "action": "unavailable",
                                                      "symbols": []}
    assert not SpamVerdict.unavailable().checked


@pytest.mark.parametrize("action", ["no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"])
def test_deliver_takes_every_verdict(action):
    assert judge_spam(PolicyRules(), _verdict(action, 99)) == ACCEPT


def test_reject_refuses_rspamds_reject_with_550():
    decision = judge_spam(REJECTING, _verdict("reject", 16))
    assert (decision.accepted, decision.smtp_reply) == (False, "550 5.7.1 Message refused as spam")
    assert not decision.temporary
    assert decision.reason == "rspamd scored the message 16 (action 'reject'); the policy refuses what rspamd rejects"


@pytest.mark.parametrize("action", ["soft reject", "greylist"])
def test_reject_defers_rspamds_temporary_actions_with_451(action):
    decision = judge_spam(REJECTING, _verdict(action, 5))
    assert decision.smtp_reply == "451 4.7.1 Message deferred by the spam filter, try again later"
    assert decision.temporary


@pytest.mark.parametrize("action", ["no action", "add header", "rewrite subject"])
def test_reject_takes_what_rspamd_only_marks(action):
    assert judge_spam(REJECTING, _verdict(action, 9)) == ACCEPT


def test_a_threshold_replaces_rspamds_reject_score():
    rules = PolicyRules(spam_action="reject", spam_threshold=6.0)
    assert judge_spam(rules, _verdict("add header", 6.0)).smtp_reply == "550 5.7.1 Message refused as spam"
    assert judge_spam(rules, _verdict("no action", 5.99)) == ACCEPT
    lenient = PolicyRules(spam_action="reject", spam_threshold=30.0)
    assert judge_spam(lenient, _verdict("reject", 20)) == ACCEPT
    assert judge_spam(lenient, _verdict("soft reject", 20)).temporary  # not a score: still deferred


def test_an_unchecked_message_is_left_to_the_fail_mode():
    assert judge_spam(REJECTING, SpamVerdict.unavailable()) == ACCEPT
    assert judge_spam(PolicyRules(spam_action="reject", spam_threshold=-100), SpamVerdict.unavailable()) == ACCEPT
