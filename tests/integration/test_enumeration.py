"""No endpoint tells whether an email is registered. Same answers are proven elsewhere
(tests/integration/test_sessions.py::test_unknown_email_and_wrong_password_get_the_same_401,
tests/integration/test_passwords.py::test_reset_request_for_an_unknown_address_is_202_and_sends_nothing);
this file adds what they leave open: the same *work* (one Argon2id verification with the same
parameters on both sign-in paths, counted at the password hasher rather than timed), the same
throttling, and byte-identical reset answers including headers."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from conduit import crypto
from tests.factories import PASSWORD, assert_error, new_email, sign_up

RESET = "/accounts/me/password-reset"
TOO_LONG = "x" * 100_000  # over the password length limit: not hashed, but still one verification


class CountingHasher(PasswordHasher):
    """The Argon2id hasher in use (the seam: crypto._hasher), counting what it verifies against."""

    def __init__(self, like: PasswordHasher) -> None:
        super().__init__(time_cost=like.time_cost, memory_cost=like.memory_cost, parallelism=like.parallelism,
                         hash_len=like.hash_len, salt_len=like.salt_len, type=like.type)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 - argon2-cffi's name
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch) -> CountingHasher:
    counting = CountingHasher(crypto._hasher)
    monkeypatch.setattr(crypto, "_hasher", counting)
    return counting


def _parameters(argon2_hash: str) -> str:
    """``argon2id$v=19$m=65536,t=3,p=4``: variant, version and cost, without salt and digest."""
    return "$".join(argon2_hash.split("$")[1:4])


async def test_sign_in_verifies_one_argon2_hash_of_the_same_cost_for_known_and_unknown_emails(client, hasher):
    known = await sign_up(client)
    cases = {
        "wrong password": (known["email"], "not the password"),
        "unknown email": (new_email(), PASSWORD),
        "not an email": ("nobody", PASSWORD),
        "too long, known": (known["email"], TOO_LONG),
        "too long, unknown": (new_email(), TOO_LONG),
    }
    answers, verified = {}, {}
    for name, (email, password) in cases.items():
        hasher.verified.clear()
        response = await client.post("/sessions", json={"email": email, "password": password})
        answers[name] = (response.status_code, response.json())
        verified[name] = list(hasher.verified)
    assert len(set(map(repr, answers.values()))) == 1, answers
    assert_error(response, 401)
    assert all(len(hashes) == 1 for hashes in verified.values()), verified
    costs = {name: _parameters(hashes[0]) for name, hashes in verified.items()}
    assert len(set(costs.values())) == 1 and costs["wrong password"].startswith("argon2id$"), costs


async def test_failures_for_an_unknown_email_are_throttled_like_those_for_a_known_one(client_from):
    """Otherwise an eleventh attempt would tell: 429 for registered addresses (proven by
    test_sessions.py::test_ten_failures_for_one_email_throttle_it_even_with_the_right_password), 401 for the rest."""
    email = new_email()
    for n in range(10):  # each from its own IP: only the per-email limit applies
        response = await client_from(f"198.51.100.{n + 1}").post(
            "/sessions", json={"email": email, "password": "not the password"})
        assert response.status_code == 401
    eleventh = await client_from("198.51.100.100").post("/sessions", json={"email": email, "password": PASSWORD})
    assert re.fullmatch(r"Too many failed sign-ins; try again in \d+ seconds\.",
                        assert_error(eleventh, 429, "too_many_requests")["error"])
    assert 1 <= int(eleventh.headers["Retry-After"]) <= 15 * 60


async def test_reset_requests_for_known_and_unknown_emails_get_byte_identical_answers(client):
    known = await sign_up(client)

    def shape(response):
        headers = {k: v for k, v in response.headers.items() if k.lower() != "date"}
        return response.status_code, response.content, headers

    answers = [shape(await client.post(RESET, json={"email": email}))
               for email in (known["email"], new_email(), "nobody")]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][:2] == (202, b"")
