"""Bodies of the Messages group (beyond the reference): stored messages, their deliveries, and
queueing them again."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from conduit.api.schemas.common import RequestBody, Timestamp, described, omittable
from conduit.api.schemas.management import WEBHOOK_ID, DeliveryLogResponse

MESSAGE_ID = "msg_06h4r4g9k2m1p3q5s7u9w1y3a5"
JOB_ID = "job_06h4r4g9k2m1p3q5s7u9w1y3a5"
MessageState = Literal["delivered", "pending", "failed", "held"]
ListedState = Literal["delivered", "pending", "failed", "held", "refused"]
_STATE = ("`delivered` (every webhook's latest delivery succeeded), `pending` (a delivery is queued or being "
          "retried), `failed` (a delivery gave up) or `held` (a delivery waits for a paused webhook); the first of "
          "held, pending, failed, delivered that one of its webhooks is in.")


class MessageSummaryResponse(BaseModel):
    id: str = described("Conduit's message ID (the SMTP `250` reply's, the payload's `id`).", MESSAGE_ID)
    received_at: Timestamp = described("When Conduit accepted (or refused) the message (RFC 3339, UTC).",
                                       "2026-04-02T12:00:00Z")
    mail_from: str = described("The envelope sender (MAIL FROM); empty for bounces.", "ann@example.org")
    rcpt_to: list[str] = described("The envelope recipients routed to your webhooks (never another account's).",
                                   ["support@mail.example.com"])
    subject: str = described("The decoded Subject header; empty when there is none.", "Order 1234")
    size: int = described("The raw message's size in bytes.", 2048)
    status: ListedState = described(_STATE + " `refused`: refused at SMTP time (listed with `status=refused`).",
                                    "delivered")
    webhook_ids: list[str] = described("Your webhooks the message went to.", [WEBHOOK_ID])
    refusal_reason: str | None = described(
        "Why the message was refused (`unknown_recipient`, `inactive_webhook`, `policy`, `spam`, `too_big`, "
        "`too_many_recipients`); null unless `status` is `refused`.", None)
    refusal_reply: str | None = described("The SMTP reply the sender got; null unless `status` is `refused`.", None)
    refusal_detail: str | None = described("Which check refused it, for a policy refusal; null unless `status` is "
                                           "`refused`.", None)


class MessageDeliveryResponse(BaseModel):
    """A webhook's latest delivery of the message, and every attempt the message had there."""

    webhook_id: str = described("The webhook.", WEBHOOK_ID)
    address: str = described("The webhook's address.", "support@mail.example.com")
    job_id: str = described("The latest delivery: the `webhook-id` header it is sent with.", JOB_ID)
    status: MessageState = described("`delivered`, `failed`, `pending` (queued or being retried) or `held` (queued "
                                     "for a paused webhook).", "delivered")
    recipients: list[str] = described("The recipients routed to this webhook: the payload's `envelope.rcpt_to`.",
                                      ["support@mail.example.com"])
    attempt_count: int = described("Attempts the latest delivery has made.", 1)
    next_attempt_at: Timestamp | None = described("When the next attempt is due; null once the delivery is final.",
                                                  None)
    finished_at: Timestamp | None = described("When the delivery became final; null while it is not.",
                                              "2026-04-02T12:00:01Z")
    last_error: str = described("Why the last attempt failed; empty when it did not.", "")
    attempts: list[DeliveryLogResponse] = described(
        "Every attempt (delivery log entry) of the message at this webhook, oldest first, as long as the delivery "
        "logs keep them (CONDUIT_LOG_RETENTION_DAYS).", [])


class MessageEnvelope(BaseModel):
    remote_ip: str = described("The sending server's IP address.", "192.0.2.25")
    helo: str = described("The name the sending server gave in HELO/EHLO.", "mx.example.org")
    tls: bool = described("Whether STARTTLS was in effect.", True)
    auth_user: str | None = described("The SMTP AUTH login, or null.", None)


class MessageResponse(MessageSummaryResponse):
    envelope: MessageEnvelope = described("The SMTP session's facts.", {"remote_ip": "192.0.2.25",
                                                                         "helo": "mx.example.org", "tls": True,
                                                                         "auth_user": None})
    payload: dict[str, Any] | None = described(
        "The default JSON payload of the message as delivered to its first webhook (see the `email.received` "
        "webhook of this document); null when it could not be made (`payload_error` says why).",
        {"id": MESSAGE_ID, "event": "email.received", "subject": "Order 1234"})
    payload_error: str | None = described("Why `payload` is null; null when it is not.", None)
    raw_url: str = described("Where the raw message is (GET, with your bearer token).",
                             f"/api/v1/messages/{MESSAGE_ID}/raw")
    deliveries: list[MessageDeliveryResponse] = described("One entry per webhook of yours the message went to.", [])


class RedeliverMessageRequest(RequestBody):
    webhook_id: str = omittable("Queue the message for this webhook only (one it went to). Left out: for each of "
                                "your webhooks it went to.", WEBHOOK_ID)


class QueuedDelivery(BaseModel):
    job_id: str = described("The queued delivery; also the `webhook-id` header of the coming delivery.", JOB_ID)
    webhook_id: str = described("The webhook it goes to.", WEBHOOK_ID)
    status: Literal["queued"] = described("Always `queued`.", "queued")


class MessageRedeliveryResponse(BaseModel):
    message_id: str = described("The message queued again.", MESSAGE_ID)
    deliveries: list[QueuedDelivery] = described("One queued delivery per webhook.",
                                                 [{"job_id": JOB_ID, "webhook_id": WEBHOOK_ID, "status": "queued"}])
