"""Mail in and out: MIME parsing into payloads, outbound mail (password reset)."""
