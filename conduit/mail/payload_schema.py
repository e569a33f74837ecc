"""What a webhook receives: the ``email.received`` payload, described once.

The README's payload table (tools/payload_table.py) and the OpenAPI document's ``webhooks``
section are both produced from these models, and every payload of the parser's corpus is
validated against them (tests/unit/test_payload_schema.py), so the description cannot drift
from what ``build_payload`` sends.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    """A payload object holds exactly these fields: one more or one fewer is a test failure."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EmailEnvelope(_Strict):
    """The SMTP envelope, as the sending server gave it."""

    mail_from: str = Field(description="The `MAIL FROM` address; `\"\"` for bounces (a null sender).",
                           examples=["ann@example.org"])
    rcpt_to: list[str] = Field(description="The message's recipients that reached this webhook (as given at RCPT).",
                               examples=[["support@mail.example.com"]])
    remote_ip: str = Field(description="IP address of the sending server.", examples=["203.0.113.9"])
    helo: str = Field(description="The name the sending server gave in `HELO`/`EHLO`.", examples=["mx.example.org"])
    tls: bool = Field(description="True when STARTTLS was in effect.", examples=[True])
    auth_user: str | None = Field(description="The SMTP AUTH login, or null when the session did not authenticate.",
                                  examples=["relay-user"])


class EmailAddress(_Strict):
    address: str = Field(description="The address (`local@domain`); may be empty for a group or a bare name.",
                         examples=["ann@example.org"])
    name: str = Field(description="The display name, decoded; empty when none.", examples=["Ann Example"])


class EmailHeader(_Strict):
    name: str = Field(description="The header's name as written.", examples=["Subject"])
    value: str = Field(description="Its value, unfolded, encoded words decoded.", examples=["Order 1234"])


class EmailAttachment(_Strict):
    """Every part that is not the first inline text/plain or text/html part."""

    filename: str | None = Field(description="The file name, decoded, or null.", examples=["invoice.pdf"])
    content_type: str = Field(description="The part's MIME type, lower case.", examples=["application/pdf"])
    size: int = Field(description="Size of the decoded content, in bytes.", examples=[48213])
    content_id: str | None = Field(description="The `Content-ID` (for inline images), or null.",
                                   examples=["<logo@example.org>"])
    disposition: str | None = Field(description="`attachment`, `inline`, or null when the part says neither.",
                                    examples=["attachment"])
    content: str | None = Field(description="The decoded content, base64; null when `content_omitted`.",
                                examples=["JVBERi0xLjQK"])
    content_omitted: bool = Field(description="True, with `content: null`, when the attachments together exceed "
                                              "`CONDUIT_MAX_INLINE_ATTACHMENT_BYTES`, or when the message could only "
                                              "be parsed within its memory budget without them (`parse_warnings` "
                                              "says so).", examples=[False])
    url: str | None = Field(description="With `content_omitted`, a link to the decoded content that needs no token "
                                        "(signed, under `CONDUIT_BASE_URL`), valid while the message is kept "
                                        "(`CONDUIT_MESSAGE_RETENTION_DAYS`); null otherwise.",
                            examples=[None])


class SpfCheck(_Strict):
    result: Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"] = Field(
        description="The SPF result for the sender (RFC 7208); `none` when not checked.", examples=["pass"])
    domain: str | None = Field(description="The domain checked: the `MAIL FROM` domain, or the HELO name for a "
                                           "null sender; empty or null when not checked.", examples=["example.org"])


class DkimSignature(_Strict):
    domain: str = Field(description="The signature's `d=` domain.", examples=["example.org"])
    result: Literal["pass", "fail"] = Field(description="Whether the signature verified.", examples=["pass"])


class DmarcCheck(_Strict):
    result: Literal["pass", "fail", "none", "temperror", "permerror"] = Field(
        description="`none` when the author domain publishes no DMARC record; `pass` when SPF or DKIM passed for "
                    "an aligned domain (relaxed or strict, as the record says), else `fail`; `temperror` or "
                    "`permerror` when the record could not be looked up or read.", examples=["pass"])
    policy: Literal["none", "quarantine", "reject"] | None = Field(
        description="The record's policy for the From domain (its `sp=` for a subdomain), or null without a "
                    "record.", examples=["reject"])
    domain: str | None = Field(description="The domain whose `_dmarc` record applied (the From domain or its "
                                           "organizational domain), or null.", examples=["example.org"])


class SenderAuthentication(_Strict):
    """Sender authentication, for the receiver to judge: Conduit refuses mail on it only where an
    SMTP security policy says so."""

    spf: SpfCheck = Field(description="The SPF check.", examples=[{"result": "pass", "domain": "example.org"}])
    dkim: list[DkimSignature] = Field(description="Every DKIM signature of the message and whether it verified.",
                                      examples=[[{"domain": "example.org", "result": "pass"}]])
    dmarc: DmarcCheck = Field(description="The DMARC check (RFC 7489) of the author (From) domain.",
                              examples=[{"result": "pass", "policy": "reject", "domain": "example.org"}])


class SpamSymbol(_Strict):
    name: str = Field(description="The rspamd symbol (the rule that matched).", examples=["DATE_IN_PAST"])
    score: float = Field(description="What it added to the score.", examples=[1.0])


class SpamCheck(_Strict):
    """rspamd's verdict, for the receiver to judge: Conduit refuses mail on it only where an SMTP
    security policy says so (`spam_action: reject`)."""

    score: float | None = Field(description="The message's score; null when `action` is `unavailable`.",
                                examples=[0.9])
    required_score: float | None = Field(description="rspamd's score for `reject`; null when `action` is "
                                                     "`unavailable`.", examples=[15.0])
    action: Literal["no action", "greylist", "add header", "rewrite subject", "soft reject", "reject",
                    "unavailable"] = Field(
        description="rspamd's recommended action; `unavailable` when rspamd could not be reached, answered late "
                    "or gave no verdict, and the message was delivered unchecked (`CONDUIT_RSPAMD_FAIL=open`).",
        examples=["no action"])
    symbols: list[SpamSymbol] = Field(description="The symbols that matched, highest score first; empty when "
                                                  "`unavailable`.",
                                      examples=[[{"name": "DATE_IN_PAST", "score": 1.0}]])


class WebhookReference(_Strict):
    id: str = Field(description="The webhook's ID.", examples=["whk_06h4r4g9k2m1p3q5s7u9w1y3a5"])
    address: str = Field(description="The webhook's address (`*@domain` for a catch-all).",
                         examples=["support@mail.example.com"])


class EmailReceived(_Strict):
    """The JSON body of a delivery (without a `payload_template`), fields in this order."""

    id: str = Field(description="Conduit's message ID, the one in the SMTP `250` reply (`msg_…`).",
                    examples=["msg_06h4r4g9k2m1p3q5s7u9w1y3a5"])
    event: Literal["email.received"] = Field(description="Always `email.received`.", examples=["email.received"])
    received_at: str = Field(description="When Conduit accepted the message (RFC 3339, UTC).",
                             examples=["2026-04-02T12:00:00Z"], json_schema_extra={"format": "date-time"})
    envelope: EmailEnvelope = Field(description="The SMTP envelope.", examples=[{
        "mail_from": "ann@example.org", "rcpt_to": ["support@mail.example.com"], "remote_ip": "203.0.113.9",
        "helo": "mx.example.org", "tls": True, "auth_user": "relay-user"}])
    message_id: str | None = Field(description="The `Message-ID` header, or null.",
                                   examples=["<CAF=2x7k@mail.example.org>"])
    from_: list[EmailAddress] = Field(alias="from", description="The `From` header's addresses.",
                                 examples=[[{"address": "ann@example.org", "name": "Ann Example"}]])
    to: list[EmailAddress] = Field(description="The `To` header's addresses.",
                              examples=[[{"address": "support@mail.example.com", "name": ""}]])
    cc: list[EmailAddress] = Field(description="The `Cc` header's addresses.", examples=[[]])
    reply_to: list[EmailAddress] = Field(description="The `Reply-To` header's addresses.", examples=[[]])
    subject: str | None = Field(description="The subject, decoded, or null.", examples=["Order 1234"])
    date: str | None = Field(description="The `Date` header in RFC 3339 UTC, or null when missing or unparsable.",
                             examples=["2026-04-02T11:59:58Z"])
    text: str | None = Field(description="The first inline `text/plain` part, decoded; for mail with only a "
                                         "`text/html` part, the text that HTML shows; else null. Lines end with "
                                         "`\\n`.", examples=["Thanks!\n\nOn Mon, Bob wrote:\n> Hello"])
    text_from_html: bool = Field(description="True when `text` was derived from the `text/html` part (the first MiB "
                                             "of it, laid out as text by inscriptis); false otherwise.",
                                 examples=[False])
    html: str | None = Field(description="The first inline `text/html` part, decoded, or null. Lines end with `\\n`.",
                             examples=["<p>Thanks!</p>"])
    reply_text: str | None = Field(description="The new part of a reply: `text` (for HTML-only mail, the text of its "
                                               "HTML) without quoted history, signature and disclaimers; null when "
                                               "there is no text, or when it could not be worked out within the "
                                               "parse's budget (then `parse_warnings` says so).",
                           examples=["Thanks!"])
    mailbox_hash: str | None = Field(description="`tag` when the mail was sent to `name+tag@domain`, else null.",
                                     examples=["tag"])
    headers: list[EmailHeader] = Field(description="Every header, in order.",
                                  examples=[[{"name": "Subject", "value": "Order 1234"}]])
    attachments: list[EmailAttachment] = Field(description="Every other part of the message.", examples=[[]])
    raw_url: str | None = Field(description="A link to the raw message (`message/rfc822`) that needs no token "
                                            "(signed, under `CONDUIT_BASE_URL`), valid while the message is kept "
                                            "(`CONDUIT_MESSAGE_RETENTION_DAYS`); null when messages are not kept and "
                                            "for simulated messages.",
                                examples=["https://conduit.example.com/api/v1/links/messages/"
                                          "msg_06h4r4g9k2m1p3q5s7u9w1y3a5/raw?expires=1775390400&signature=3q2-7w"])
    auth: SenderAuthentication = Field(description="Sender authentication results.", examples=[{
        "spf": {"result": "pass", "domain": "example.org"}, "dkim": [{"domain": "example.org", "result": "pass"}],
        "dmarc": {"result": "pass", "policy": "reject", "domain": "example.org"}}])
    spam: SpamCheck | None = Field(description="rspamd's verdict at receipt, or null when Conduit runs without "
                                               "rspamd (`CONDUIT_RSPAMD_URL` unset) and for simulated messages.",
                                   examples=[{"score": 0.9, "required_score": 15.0, "action": "no action",
                                              "symbols": [{"name": "DATE_IN_PAST", "score": 1.0}]}])
    webhook: WebhookReference = Field(description="The webhook this delivery is for.", examples=[{
        "id": "whk_06h4r4g9k2m1p3q5s7u9w1y3a5", "address": "support@mail.example.com"}])
    simulated: bool = Field(description="True for messages made by the simulate endpoint.", examples=[False])
    parse_warnings: list[str] = Field(description="What could not be parsed or decoded (parsing never fails a "
                                                  "delivery).", examples=[[]])


class SignatureHeaders(_Strict):
    """The Standard Webhooks headers of every delivery (https://www.standardwebhooks.com/)."""

    webhook_id: str = Field(alias="webhook-id", description="The delivery's ID: the same on every attempt of one "
                            "delivery, so a receiver can drop a repeat.", examples=["job_06h4r4g9k2m1p3q5s7u9w1y3a5"])
    webhook_timestamp: str = Field(alias="webhook-timestamp", description="Unix time of the attempt, in seconds; "
                                   "refuse deliveries too far from your clock.", examples=["1775131200"])
    webhook_signature: str = Field(alias="webhook-signature", description="`v1,` and the base64 HMAC-SHA256, keyed "
                                   "with the webhook's secret (without `whsec_`, base64-decoded), of "
                                   "`{webhook-id}.{webhook-timestamp}.{body}`; several signatures are separated by "
                                   "spaces.", examples=["v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="])
