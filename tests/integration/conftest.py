"""Fixtures of the webhook transport tests: the transport under test (each of them, through
``transport_kind``) and real HTTP receivers on loopback, plain and TLS."""

from tests.support.http_servers import (  # noqa: F401 - fixtures for the test modules here
    ca,
    make,
    receiver,
    tls_receiver,
    transport_kind,
    trusting,
)
