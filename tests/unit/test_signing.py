"""Standard Webhooks signatures, checked with the reference receiver library."""

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conduit.net.signing import sign_headers, signing_key
from conduit.services.webhook_rules import generate_webhook_secret

BODY = '{"event":"email.received","subject":"Grüße"}'.encode()

SECRETS = [
    pytest.param(generate_webhook_secret(), id="whsec"),
    pytest.param("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id="whsec-unpadded"),
    pytest.param("averyLongSecretValue1234567890abcd", id="plain-base64-alphabet"),
    pytest.param("my-webhook_secret.value!2024abcd", id="plain-with-punctuation"),
]


def _headers(secret: str, body: bytes = BODY, msg_id: str = "msg_0123", timestamp: int | None = None) -> dict:
    return sign_headers(secret, msg_id=msg_id, timestamp=timestamp or int(time.time()), body=body)


@pytest.mark.parametrize("secret", SECRETS)
def test_standardwebhooks_library_verifies(secret):
    assert Webhook(secret).verify(BODY, _headers(secret)) == {"event": "email.received", "subject": "Grüße"}


@pytest.mark.parametrize("secret", SECRETS)
def test_tampered_body_fails(secret):
    headers = _headers(secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"received", b"RECEIVED"), headers)


@pytest.mark.parametrize("secret", SECRETS)
def test_tampered_id_or_timestamp_fails(secret):
    headers = _headers(secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers | {"webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers | {"webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)})


def test_other_secret_fails():
    headers = _headers(generate_webhook_secret())
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_webhook_secret()).verify(BODY, headers)


def test_header_values():
    headers = sign_headers("whsec_" + base64.b64encode(b"k" * 32).decode(), msg_id="msg_1", timestamp=1700000000,
                           body=b"{}")
    expected = hmac.new(b"k" * 32, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_key_derivation_matches_the_library():
    for secret in ("whsec_" + base64.b64encode(b"0123456789abcdef").decode(), "averyLongSecretValue1234567890abcd"):
        assert signing_key(secret) == Webhook(secret)._whsecret


def test_secret_the_library_cannot_decode_falls_back_to_its_bytes():
    secret = "my-webhook-secret-0123456789"  # 25 base64 characters: not decodable
    headers = sign_headers(secret, msg_id="msg_1", timestamp=1700000000, body=b"{}")
    expected = hmac.new(secret.encode(), b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_empty_msg_id_is_refused():
    with pytest.raises(ValueError):
        sign_headers(generate_webhook_secret(), msg_id="", timestamp=1, body=b"")
