"""Delivery of messages to webhooks: payload rendering, signing, the HTTP client, retries."""
