"""The inbound SMTP server (its own protocol on asyncio): recipient routing, policies, durable acceptance."""
