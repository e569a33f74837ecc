"""The inbound SMTP server (aiosmtpd): recipient routing, policies, durable acceptance."""
