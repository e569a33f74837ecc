"""The retry policy: every rule, no I/O."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from conduit.services.retry import DEFAULT_SCHEDULE, RetryDecision, decide, parse_retry_after


class Fixed(random.Random):
    """A "random" source that always returns the same point of the range, so the
    jitter's bounds can be asserted exactly."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def _decide(status, attempt=1, retry_after=None, error=None, schedule=DEFAULT_SCHEDULE, rng=None):
    return decide(status=status, error=error, attempt=attempt, retry_after=retry_after, schedule=schedule,
                  rng=rng or Fixed(0.5))


# -- outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status):
    decision = _decide(status)
    expected = RetryDecision(retry_in=None, give_up=False, deactivate=False, reason=f"delivered (HTTP {status})")
    assert decision == expected
    assert decision.delivered


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 599])
def test_retryable_outcomes_retry_on_schedule(status):
    decision = _decide(status, attempt=1)
    assert decision.retry_in == DEFAULT_SCHEDULE[1]
    assert not decision.give_up and not decision.deactivate and not decision.delivered


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422, 451, 499])
def test_other_4xx_give_up_at_once(status):
    decision = _decide(status, attempt=1)
    assert (decision.retry_in, decision.give_up, decision.deactivate) == (None, True, False)
    assert decision.reason == f"HTTP {status}: not retried"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_give_up_at_once(status):
    decision = _decide(status)
    assert (decision.retry_in, decision.give_up, decision.deactivate) == (None, True, False)
    assert "redirects are not followed" in decision.reason


@pytest.mark.parametrize("status", [100, 600, 999])
def test_odd_statuses_give_up(status):
    assert _decide(status).give_up


def test_410_gives_up_and_deactivates():
    decision = _decide(410, attempt=3)
    assert (decision.retry_in, decision.give_up, decision.deactivate) == (None, True, True)
    assert "deactivated" in decision.reason


def test_connection_error_reason_names_the_error():
    decision = _decide(None, error="could not connect to example.com:443: Connection refused")
    assert decision.reason.startswith("no response (could not connect to example.com:443: Connection refused)")


# -- schedule ----------------------------------------------------------------------


def test_default_schedule():
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize("attempt", range(1, len(DEFAULT_SCHEDULE)))
def test_each_attempt_waits_its_scheduled_delay(attempt):
    assert _decide(500, attempt=attempt).retry_in == DEFAULT_SCHEDULE[attempt]


def test_gives_up_when_the_schedule_is_exhausted():
    last = len(DEFAULT_SCHEDULE)
    assert _decide(500, attempt=last - 1).retry_in == DEFAULT_SCHEDULE[-1]
    decision = _decide(500, attempt=last)
    assert (decision.retry_in, decision.give_up, decision.deactivate) == (None, True, False)
    assert decision.reason == f"HTTP 500: gave up after {last} attempts"
    assert _decide(None, attempt=last + 5).give_up


def test_custom_schedule():
    schedule = (0, 1, 2)
    assert _decide(503, attempt=1, schedule=schedule).retry_in == 1
    assert _decide(503, attempt=2, schedule=schedule).retry_in == 2
    assert _decide(503, attempt=3, schedule=schedule).give_up


def test_single_attempt_schedule_never_retries():
    assert _decide(500, attempt=1, schedule=(0,)).give_up


def test_attempt_must_be_positive():
    with pytest.raises(ValueError):
        _decide(500, attempt=0)


# -- jitter ------------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
def test_jitter_is_ten_percent_either_way(fraction, factor):
    assert _decide(500, attempt=2, rng=Fixed(fraction)).retry_in == pytest.approx(300 * factor)


def test_jitter_with_a_real_random_source_stays_in_bounds():
    rng = random.Random(42)
    delays = [decide(status=500, error=None, attempt=3, retry_after=None, rng=rng).retry_in for _ in range(500)]
    assert all(1800 * 0.9 <= d <= 1800 * 1.1 for d in delays)
    assert len(set(delays)) > 1


def test_default_random_source_is_used_without_rng():
    delay = decide(status=500, error=None, attempt=1, retry_after=None).retry_in
    assert 5 * 0.9 <= delay <= 5 * 1.1


# -- Retry-After ---------------------------------------------------------------------


def test_retry_after_within_the_window_is_honoured():
    assert _decide(429, attempt=2, retry_after=450).retry_in == 450  # scheduled 300


def test_retry_after_shorter_than_scheduled_is_raised_to_the_schedule():
    assert _decide(429, attempt=2, retry_after=1).retry_in == 300


def test_retry_after_longer_than_twice_the_schedule_is_capped():
    assert _decide(503, attempt=2, retry_after=86400).retry_in == 600


def test_retry_after_clamp_applies_to_the_jittered_delay():
    assert _decide(503, attempt=2, retry_after=86400, rng=Fixed(1.0)).retry_in == pytest.approx(660)
    assert _decide(503, attempt=2, retry_after=0, rng=Fixed(0.0)).retry_in == pytest.approx(270)


def test_retry_after_does_not_turn_a_permanent_failure_into_a_retry():
    assert _decide(404, retry_after=10).give_up
    assert _decide(503, attempt=len(DEFAULT_SCHEDULE), retry_after=10).give_up


# -- parse_retry_after ---------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("86400", 86400.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),  # IMF-fixdate
        ("Wednesday, 01-May-24 12:00:30 GMT", 30.0),  # RFC 850
        ("Wed May  1 12:01:00 2024", 60.0),  # asctime
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "12abc", "٣", "Wed, 99 Foo 2024"])
def test_parse_retry_after_unreadable(value):
    assert parse_retry_after(value, NOW) is None


def test_parse_retry_after_with_naive_now():
    assert parse_retry_after("Wed, 01 May 2024 12:00:10 GMT", NOW.replace(tzinfo=None)) == 10.0


def test_parse_retry_after_feeds_decide():
    later = (NOW + timedelta(minutes=8)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert _decide(503, attempt=2, retry_after=parse_retry_after(later, NOW)).retry_in == 480
