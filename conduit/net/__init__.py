"""Network helpers: DNS resolution honouring CONDUIT_DNS_SERVERS, and address classification."""
