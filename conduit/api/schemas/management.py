"""Bodies of the Domains, SMTP Policies and Webhooks groups.

A create request requires what the resource cannot do without; an update (PUT) is partial, so
every field of an update request may be left out. No request field is ever null: a field left
out keeps its value (or takes its default), and the services receive only the fields sent
(``model_dump(exclude_unset=True)``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from conduit.api.schemas.common import Model, RequestBody, Timestamp, described, omittable

DOMAIN_ID = "dom_06h4r4g9k2m1p3q5s7u9w1y3a5"
POLICY_ID = "pol_06h4r4g9k2m1p3q5s7u9w1y3a5"
WEBHOOK_ID = "whk_06h4r4g9k2m1p3q5s7u9w1y3a5"
STATUS = Literal["delivered", "failed", "retrying", "rejected"]


class CreateDomainRequest(RequestBody):
    name: str = described("The domain name (IDNA names are stored as their A-label, lower case).", "mail.example.com")


class DnsRecord(BaseModel):
    """One DNS record a domain's owner publishes."""

    type: Literal["TXT", "MX"] = described("The record type.", "TXT")
    name: str = described("The name the record is published at.", "_conduit-verify.mail.example.com")
    value: str = described("The record's text (TXT) or mail host (MX).", "conduit-verify=6f1c2b9e4d7a8c3f")
    priority: int | None = described("The MX preference; null for TXT.", 10, default=None)


class DomainResponse(Model):
    id: str = described("Domain ID.", DOMAIN_ID)
    name: str = described("The domain name, lower case, A-label form.", "mail.example.com")
    account_id: str = described("The claiming account; empty for public domains.", "acc_06h4r4g66thr6esbl3mb1eivms")
    verification_token: str = described("Publish it as a TXT record at `_conduit-verify.<name>`; empty for public "
                                    "domains.", "conduit-verify=6f1c2b9e4d7a8c3f")
    verified: bool = described("True once POST /domains/{id}/verify found the TXT and MX records; always true for "
                           "public domains.", False)
    is_public: bool = described("True for the operator's shared domains (CONDUIT_PUBLIC_DOMAINS), on which any "
                            "account may create webhooks.", False)
    created_at: Timestamp = described("When the domain was claimed (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    updated_at: Timestamp = described("When the claim last changed (RFC 3339, UTC).", "2026-04-02T12:00:00Z")

    dns_records: list[DnsRecord] = described(
        "Beyond the reference: the records to publish for verification (TXT with the token, MX to "
        "CONDUIT_MX_HOST); empty for public domains.",
        [{"type": "TXT", "name": "_conduit-verify.mail.example.com", "value": "conduit-verify=6f1c2b9e4d7a8c3f",
          "priority": None}, {"type": "MX", "name": "mail.example.com", "value": "mx.conduit.email", "priority": 10}],
        default_factory=list)

_SOURCE_IPS = ("IP addresses and CIDRs, comma- or space-separated, from which the policy's webhooks take mail; "
               "empty: any.")
_SPF = ("Domains (and their subdomains), comma- or space-separated, of which a passing SPF check is accepted; "
        "empty: any passing domain.")
_DKIM = ("Domains (and their subdomains), comma- or space-separated, of which a valid DKIM signature is "
         "accepted; empty: any valid signature.")
_SPAM_ACTION = ("What rspamd's verdict does when Conduit runs with rspamd (`CONDUIT_RSPAMD_URL`): `deliver` passes "
                "the verdict on in the payload's `spam`; `reject` refuses what rspamd rejects with `550 5.7.1` and "
                "answers its `soft reject` and `greylist` with `451 4.7.1`.")
SpamAction = Literal["deliver", "reject"]
_SPAM_THRESHOLD = ("With `spam_action: reject`, a score at or above this is refused (`550 5.7.1`) instead of rspamd's "
                   "own `reject` (-1000 to 1000).")
_CREDENTIALS = ("`username:password` for SMTP AUTH (split at the first colon), the password 12 to 256 "
                "characters; an empty string removes the credentials.")


class SmtpSecurityPolicyRequest(RequestBody):
    """Create an SMTP security policy: a name, and rules that each default to allowing."""

    name: str = described("A name, unique among the account's policies.", "Only our relay")
    allowed_source_ips: str = omittable(_SOURCE_IPS + " Default: empty.", "192.0.2.0/24, 2001:db8::/32")
    allowed_spf_domains: str = omittable(_SPF + " Default: empty.", "example.com")
    allowed_dkim_domains: str = omittable(_DKIM + " Default: empty.", "example.com")
    require_dkim: bool = omittable("Refuse mail without a valid DKIM signature of an allowed domain. Default: false.",
                                   True)
    require_smtp_auth: bool = omittable("Refuse mail whose SMTP session did not authenticate with this policy's "
                                        "credentials. Default: false.", False)
    require_spf: bool = omittable("Refuse mail whose SPF check did not pass for an allowed domain. Default: false.",
                                  True)
    smtp_credentials: str = omittable(_CREDENTIALS + " Default: none.", "relay:s3cret-passphrase")
    spam_action: SpamAction = omittable(_SPAM_ACTION + " Default: `deliver`.", "reject")
    spam_threshold: float = omittable(_SPAM_THRESHOLD + " Default: none (rspamd's own).", 10.0, strict=True)


class UpdateSmtpSecurityPolicyRequest(RequestBody):
    """Change an SMTP security policy: only the fields sent change."""

    name: str = omittable("A name, unique among the account's policies.", "Only our relay")
    allowed_source_ips: str = omittable(_SOURCE_IPS, "192.0.2.0/24, 2001:db8::/32")
    allowed_spf_domains: str = omittable(_SPF, "example.com")
    allowed_dkim_domains: str = omittable(_DKIM, "example.com")
    require_dkim: bool = omittable("Refuse mail without a valid DKIM signature of an allowed domain.", True)
    require_smtp_auth: bool = omittable("Refuse mail whose SMTP session did not authenticate with this policy's "
                                        "credentials.", False)
    require_spf: bool = omittable("Refuse mail whose SPF check did not pass for an allowed domain.", True)
    smtp_credentials: str = omittable(_CREDENTIALS, "relay:s3cret-passphrase")
    spam_action: SpamAction = omittable(_SPAM_ACTION, "reject")
    spam_threshold: float = omittable(_SPAM_THRESHOLD + " `clear_spam_threshold` removes it.", 10.0, strict=True)
    clear_spam_threshold: bool = omittable("true removes the policy's `spam_threshold` (rspamd's own applies).", True)


class SmtpSecurityPolicyResponse(BaseModel):
    id: str = described("SMTP security policy ID.", POLICY_ID)
    name: str = described("The policy's name.", "Only our relay")
    allowed_source_ips: str = described("Allowed source networks, normalised, comma-separated; empty: any.",
                                    "192.0.2.0/24, 2001:db8::/32")
    allowed_spf_domains: str = described("Allowed SPF domains, comma-separated; empty: any passing domain.",
                                     "example.com")
    allowed_dkim_domains: str = described("Allowed DKIM domains, comma-separated; empty: any valid signature.",
                                      "example.com")
    require_dkim: bool = described("Mail needs a valid DKIM signature of an allowed domain.", True)
    require_smtp_auth: bool = described("Mail needs an SMTP session authenticated with this policy's credentials.",
                                        False)
    require_spf: bool = described("Mail needs a passing SPF check for an allowed domain.", True)
    smtp_credentials: str = described("`username:********` (the password is shown only in the response of the request "
                                  "that set it); empty when none.", "relay:********")
    created_at: Timestamp = described("When the policy was created (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    updated_at: Timestamp = described("When the policy last changed (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    spam_action: SpamAction = described(
        "Beyond the reference: what rspamd's verdict does (`deliver` or `reject`).", "deliver")
    spam_threshold: float | None = described(
        "Beyond the reference: the score at or above which `reject` refuses mail; null: rspamd's own.", None)


_ADDRESS = ("`name@domain`, or `*@domain` (catch-all), on a domain the account verified or a public domain; "
            "no `+` (mail to `name+tag@domain` reaches `name@domain`).")
_TARGET = ("Absolute http(s) URL the mail is POSTed to; no `user:password@`. Private and loopback targets are "
           "refused unless the operator allows them.")
_HEADERS = ("Headers added to every delivery (at most 20); Conduit's own (`Content-Type`, `webhook-*`, hop-by-hop) "
            "cannot be set.")
_TEMPLATE = ("Jinja2 template (sandboxed) of the request body, compiled when saved; an empty string: the default "
             "JSON payload.")
_RATE = "Deliveries per minute, spaced evenly; 0: unlimited. Excess deliveries wait; none is dropped."
_MODE = ("Beyond the reference: `queued` (Conduit answers `250` once the message is stored and delivers it "
         "afterwards, retrying for about a day) or `synchronous` (before answering the end of DATA, Conduit POSTs "
         "the message and waits up to `sync_timeout_ms`: 2xx → `250`; 4xx other than 408 and 429 → `550 5.7.1` "
         "with the `X-Conduit-Smtp-Reason` header or the first line of a text body; 408, 429, 5xx, timeouts and "
         "connection errors → `451 4.3.0`, and the sender retries).")
DeliveryMode = Literal["queued", "synchronous"]
_SYNC_TIMEOUT = ("Beyond the reference: how long a `synchronous` delivery waits for the receiver's answer before "
                 "answering the sender `451 4.3.0`, in milliseconds (1000 to 60000).")
_SECRET = "Signing secret (24–256 printable characters) for the `webhook-signature` header."  # noqa: S105 - a field description


class CreateWebhookRequest(RequestBody):
    """Create a webhook: the address it takes mail for and the URL it delivers to."""

    address: str = described(_ADDRESS, "support@mail.example.com")
    target_url: str = described(_TARGET, "https://app.example.com/hooks/mail")
    active: bool = omittable("Whether the address takes mail. Default: true.", True)
    custom_headers: dict[str, str] = omittable(_HEADERS + " Default: none.", {"X-Api-Key": "k_live_4f9a"})
    name: str = omittable("A name to recognise the webhook by. Default: the address.", "Support inbox")
    payload_template: str = omittable(_TEMPLATE + " Default: empty.", '{"subject": {{ subject | tojson }}}')
    rate_limit: int = omittable(_RATE + " Default: 0.", 60)
    secret: str = omittable(_SECRET + " Default: generated (`whsec_` and 32 random bytes, base64).",
                            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    smtp_security_policy_id: str = omittable("ID of one of the account's SMTP security policies to apply at SMTP "
                                             "time. Default: none (all mail accepted).", POLICY_ID)
    delivery_mode: DeliveryMode = omittable(_MODE + " Default: `queued`.", "synchronous")
    sync_timeout_ms: int = omittable(_SYNC_TIMEOUT + " Default: 10000.", 10000)


class UpdateWebhookRequest(RequestBody):
    """Change a webhook: only the fields sent change."""

    active: bool = omittable("Whether the address takes mail; false pauses it (queued mail is held).", False)
    address: str = omittable(_ADDRESS, "support@mail.example.com")
    clear_security_policy: bool = omittable("true removes the webhook's SMTP security policy.", True)
    custom_headers: dict[str, str] = omittable(_HEADERS + " Replaces the headers set before.",
                                               {"X-Api-Key": "k_live_4f9a"})
    name: str = omittable("A name to recognise the webhook by; empty: the address.", "Support inbox")
    payload_template: str = omittable(_TEMPLATE, '{"subject": {{ subject | tojson }}}')
    rate_limit: int = omittable(_RATE, 60)
    secret: str = omittable(_SECRET, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    smtp_security_policy_id: str = omittable("ID of one of the account's SMTP security policies to apply at SMTP "
                                             "time (`clear_security_policy` removes it).", POLICY_ID)
    target_url: str = omittable(_TARGET, "https://app.example.com/hooks/mail")
    delivery_mode: DeliveryMode = omittable(_MODE, "synchronous")
    sync_timeout_ms: int = omittable(_SYNC_TIMEOUT, 10000)


class WebhookResponse(BaseModel):
    id: str = described("Webhook ID; also `webhook.id` in the payload.", WEBHOOK_ID)
    name: str = described("The webhook's name.", "Support inbox")
    address: str = described("The address it takes mail for.", "support@mail.example.com")
    target_url: str = described("The URL deliveries are POSTed to.", "https://app.example.com/hooks/mail")
    active: bool = described("Whether the address takes mail (false: paused by its owner, or deactivated after a "
                         "`410` or days of failures).", True)
    custom_headers: dict[str, str] = described("Headers added to every delivery.", {"X-Api-Key": "k_live_4f9a"})
    payload_template: str | None = described("Jinja2 template of the request body; null: the default JSON payload.",
                                         '{"subject": {{ subject | tojson }}}')
    rate_limit: int = described("Deliveries per minute; 0: unlimited.", 60)
    secret: str = described("Signing secret for the Standard Webhooks `webhook-signature` header.",
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    smtp_security_policy_id: str | None = described("The SMTP security policy applied at SMTP time; null: none.",
                                                POLICY_ID)
    created_at: Timestamp = described("When the webhook was created (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    updated_at: Timestamp = described("When the webhook last changed (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    delivery_mode: DeliveryMode = described(_MODE, "queued")
    sync_timeout_ms: int = described(_SYNC_TIMEOUT, 10000)


class DeliveryLogResponse(Model):
    id: str = described("Delivery log entry ID.", "dlg_06h4r4g9k2m1p3q5s7u9w1y3a5")
    webhook_id: str = described("The webhook delivered to.", WEBHOOK_ID)
    attempted_at: Timestamp = described("When the attempt (or the SMTP refusal) happened (RFC 3339, UTC).",
                                    "2026-04-02T12:00:03Z")
    status: STATUS = described("`delivered` (2xx), `retrying` (failed, another attempt is scheduled), `failed` (no "
                           "attempt left, or refused by the receiver for good) or `rejected` (refused at SMTP time "
                           "by the SMTP security policy).", "delivered")
    http_status: int = described("The receiver's HTTP status; 0 when no HTTP response was received (or the mail was "
                             "refused at SMTP).", 200)
    duration_ms: int = described("How long the attempt took, in milliseconds.", 84)
    error: str = described("Why the attempt failed (connection refused, timeout, HTTP status, policy refusal); empty "
                       "when delivered.", "")
    sender: str = described("The envelope sender (MAIL FROM); empty for bounces.", "ann@example.org")
    smtp_message_id: str = described("Conduit's message ID, as in the SMTP `250` reply and the payload's `id`.",
                                 "msg_06h4r4g9k2m1p3q5s7u9w1y3a5")
    simulated: bool = described("True for deliveries made by POST /webhooks/{id}/simulate.", False)
    response_excerpt: str = described("Beyond the reference: the first KiB of the receiver's answer, as text.",
                                      "ok")
    response_headers: dict[str, str] = described(
        "Beyond the reference: the receiver's headers that explain an answer, `Retry-After` and `Content-Type`, "
        "those it sent; empty when no response arrived.", {"Retry-After": "120", "Content-Type": "text/plain"})


class SimulateWebhookRequest(RequestBody):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = omittable("Sender address of the synthetic message. Default: `simulator@conduit.invalid`.",
                           "ann@example.org", alias="from")
    subject: str = omittable("Subject of the synthetic message. Default: `Conduit test message`.",
                             "Hello from the simulator")
    text: str = omittable("Plain-text body of the synthetic message. Default: a short text saying it is a test.",
                          "This is a test.")


class SimulateWebhookResponse(BaseModel):
    http_status: int = described("The receiver's HTTP status; 0 when no HTTP response was received.", 200)
    duration_ms: int = described("How long the delivery took, in milliseconds.", 84)
    error: str = described("Why the delivery failed; empty when it succeeded.", "")
    simulated: bool = described("Always true.", True)


class PayloadPreviewRequest(RequestBody):
    """Beyond the reference: what to render for a preview (the dashboard's template editor)."""

    model_config = ConfigDict(populate_by_name=True)

    webhook_id: str = omittable("A webhook of yours: its address and template (unless `payload_template` is "
                                "given) are used.", "whk_06h4r4g9k2m1p3q5s7u9w1y3a5")
    payload_template: str = omittable("The template to render; empty: the default JSON body; left out: the "
                                      "webhook's.", '{"subject": {{ subject | tojson }}}')
    address: str = omittable("The recipient; default the webhook's address.", "support@mail.example.com")
    from_: str = omittable("The sender; default simulator@conduit.invalid.", "ann@example.org", alias="from")
    subject: str = omittable("The subject of the sample message.", "Order 1234")
    text: str = omittable("The text of the sample message.", "Hello")


class PayloadPreviewResponse(BaseModel):
    body: str = described("The request body a delivery of the sample message would send.",
                          '{"subject": "Order 1234"}')
    content_type: str = described("Its Content-Type.", "application/json")


class RedeliveryResponse(BaseModel):
    job_id: str = described("The queued delivery; also the `webhook-id` header of the coming delivery.",
                        "job_06h4r4g9k2m1p3q5s7u9w1y3a5")
    message_id: str = described("Conduit's message ID (the payload's `id`).", "msg_06h4r4g9k2m1p3q5s7u9w1y3a5")
    status: Literal["queued"] = described("Always `queued`.", "queued")
