"""Conduit: receives email over SMTP and delivers it, parsed and signed, to HTTP webhooks."""

__version__ = "0.1.0"
