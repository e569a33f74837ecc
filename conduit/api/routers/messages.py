"""Messages (beyond the reference): the account's stored messages, kept for
CONDUIT_MESSAGE_RETENTION_DAYS; list, read, download, erase, queue again."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response

from conduit.api.deps import ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.management import DeliveryLogResponse
from conduit.api.schemas.messages import (
    ListedState,
    MessageDeliveryResponse,
    MessageEnvelope,
    MessageRedeliveryResponse,
    MessageResponse,
    MessageState,
    MessageSummaryResponse,
    QueuedDelivery,
    RedeliverMessageRequest,
)
from conduit.services import stored_messages
from conduit.services.stored_messages import Detail, Summary
from conduit.storage.message_store import MessageFilters

router = APIRouter(prefix="/messages", tags=["Messages"])
API_PREFIX = "/api/v1"
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text: a 422, not a 500
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")
MessageId = Annotated[str, Path(description="Message ID (`msg_…`)", max_length=64)]
_NEXT_HEADERS = {
    "Link": {"description": 'The next page, when there is one: `</api/v1/messages?...&cursor=...>; rel="next"`.',
             "schema": {"type": "string"}},
    "X-Next-Cursor": {"description": "The `cursor` of the next page, when there is one.", "schema": {"type": "string"}},
}


def _summary_fields(summary: Summary) -> dict[str, Any]:
    return {"id": summary.id, "received_at": summary.received_at, "mail_from": summary.mail_from,
            "rcpt_to": summary.rcpt_to, "subject": summary.subject, "size": summary.size, "status": summary.status,
            "webhook_ids": summary.webhook_ids, "refusal_reason": summary.refusal_reason,
            "refusal_reply": summary.refusal_reply, "refusal_detail": summary.refusal_detail}


def _detail(detail: Detail) -> MessageResponse:
    message = detail.message
    return MessageResponse(
        **_summary_fields(detail.summary),
        envelope=MessageEnvelope(remote_ip=message.remote_ip, helo=message.helo, tls=message.tls,
                                 auth_user=message.auth_user),
        payload=detail.payload, payload_error=detail.payload_error,
        raw_url=f"{API_PREFIX}/messages/{message.id}/raw",
        deliveries=[MessageDeliveryResponse(
            webhook_id=d.current.webhook_id, address=d.current.webhook_address, job_id=d.current.job_id,
            status=cast(MessageState, d.state), recipients=d.current.recipients, attempt_count=d.current.attempts,
            next_attempt_at=d.current.next_attempt_at if d.current.status == "queued" else None,
            finished_at=d.current.finished_at, last_error=d.current.last_error,
            attempts=[DeliveryLogResponse.model_validate(a) for a in d.attempts]) for d in detail.deliveries])


def safe_filename(filename: str | None, fallback: str) -> str:
    """A Content-Disposition value naming ``filename`` without a path, quotes or control
    characters: an ASCII ``filename`` and, when the name is not plain ASCII, an RFC 5987
    ``filename*`` with the UTF-8 name."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"').strip(" .")[:200] or fallback
    plain = _FILENAME_UNSAFE.sub("_", name).strip(" .") or fallback
    value = f'attachment; filename="{plain}"'
    if plain != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def media_type(declared: str) -> str:
    declared = declared.strip().lower()
    return declared if _MEDIA_TYPE.fullmatch(declared) else "application/octet-stream"


@router.get("", operation_id="listMessages", summary="List stored messages",
            description="Not in the original reference. The account's stored messages, newest first, `limit` at a "
                        "time: when there are more, the `Link` header (`rel=\"next\"`) and `X-Next-Cursor` give the "
                        "next page's `cursor`. Filters combine (all must match). Messages are kept for "
                        "CONDUIT_MESSAGE_RETENTION_DAYS (default 3) after receipt. A `cursor` this API did not "
                        "return is a 400 `invalid_cursor`; a `webhook_id` that is not yours a 404.",
            response_model=list[MessageSummaryResponse],
            responses={**errors(400, 401, 404), 200: {"headers": _NEXT_HEADERS, "description": "Stored messages"}})
async def list_messages(
    request: Request,
    response: Response,
    account: CurrentAccount,
    db: SessionDep,
    context: ContextDep,
    limit: int = Query(50, ge=1, le=stored_messages.MAX_PAGE, description="Maximum number of messages to return "
                                                                           "(1–200, default 50)."),
    cursor: str | None = Query(None, max_length=200, description="Where the page starts: the `cursor` of the "
                                                                 "previous page's `Link` header."),
    webhook_id: str | None = Query(None, max_length=64, pattern=_NO_NUL,
                                   description="Only messages delivered to this webhook of yours."),
    recipient: str | None = Query(None, max_length=320, pattern=_NO_NUL,
                                  description="Only messages to this envelope recipient (any case)."),
    sender: str | None = Query(None, max_length=320, pattern=_NO_NUL,
                               description="Only messages from this envelope sender (any case)."),
    subject: str | None = Query(None, max_length=998, pattern=_NO_NUL,
                                description="Only messages whose Subject contains this text (any case)."),
    received_after: Annotated[datetime | None, Query(description="Only messages received after this time (RFC "
                                                                 "3339; without an offset: UTC).")] = None,
    received_before: Annotated[datetime | None, Query(description="Only messages received before this time.")] = None,
    status: Annotated[ListedState | None, Query(description="Only messages in this state: `delivered`, `pending`, "
                                                            "`failed`, `held`; `refused` lists messages refused at "
                                                            "SMTP time instead.")] = None,
) -> list[MessageSummaryResponse]:
    filters = MessageFilters(webhook_id=webhook_id, recipient=recipient, sender=sender, subject=subject,
                             received_after=received_after, received_before=received_before)
    page = await stored_messages.list_messages(db, context.database.messages, account, filters=filters,
                                               status=status, cursor=cursor, limit=limit)
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return [MessageSummaryResponse(**_summary_fields(s)) for s in page.items]


@router.get("/{id}", operation_id="getMessage", summary="Get a stored message",
            description="Not in the original reference. The message's envelope, its default JSON payload as its "
                        "first webhook of yours got it, and each webhook's delivery with its attempts.",
            response_model=MessageResponse, responses=errors(401, 404))
async def get_message(id: MessageId, account: CurrentAccount, db: SessionDep,  # noqa: A002
                      context: ContextDep) -> MessageResponse:
    detail = await stored_messages.get_message(db, context.database.messages, account, id, renders=context.renders,
                                               settings=context.settings)
    return _detail(detail)


@router.get("/{id}/raw", operation_id="getRawMessage", summary="Download the raw message",
            description="Not in the original reference. The message exactly as it was received (RFC 5322), as "
                        "`message/rfc822`.",
            response_class=Response,
            responses={**errors(401, 404),
                       200: {"description": "The raw message",
                             "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}}})
async def get_raw_message(id: MessageId, account: CurrentAccount, db: SessionDep,  # noqa: A002
                          context: ContextDep) -> Response:
    raw = await stored_messages.raw_message(db, context.database.messages, account, id)
    return Response(content=raw, media_type="message/rfc822",
                    headers={"Content-Disposition": safe_filename(f"{id}.eml", "message.eml")})


@router.get("/{id}/attachments/{index}", operation_id="getMessageAttachment", summary="Download an attachment",
            description="Not in the original reference. The payload's `attachments[index]` (0-based), decoded, "
                        "with its own content type, as a download (`Content-Disposition: attachment`).",
            response_class=Response,
            responses={**errors(401, 404, 429, 503),
                       200: {"description": "The attachment's content, with its own content type",
                             "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}})
async def get_message_attachment(id: MessageId, account: CurrentAccount, db: SessionDep,  # noqa: A002
                                 context: ContextDep,
                                 index: int = Path(ge=0, le=10_000, description="The attachment's position in the "
                                                                                "payload's `attachments` (0-based)"),
                                 ) -> Response:
    part = await stored_messages.attachment(db, context.database.messages, account, id, index,
                                            renders=context.renders, settings=context.settings)
    return Response(content=part.data, media_type=media_type(part.content_type),
                    headers={"Content-Disposition": safe_filename(part.filename, f"attachment-{index}")})


@router.delete("/{id}", operation_id="deleteMessage", summary="Erase a stored message", status_code=204,
               description="Not in the original reference. Erases the message now: its raw bytes and its queued "
                           "deliveries to your webhooks (delivery logs stay). Audited as `message.deleted`. A message "
                           "also addressed to another account's webhooks keeps its bytes until that account's "
                           "deliveries no longer need them.",
               responses=errors(401, 404))
async def delete_message(id: MessageId, account: CurrentAccount, db: SessionDep, context: ContextDep,  # noqa: A002
                         ip: ClientIP) -> Response:
    await stored_messages.erase(db, context.database.messages, account, id, ip=ip)
    return Response(status_code=204)


@router.post("/{id}/redeliver", operation_id="redeliverStoredMessage", status_code=202,
             summary="Queue a stored message for delivery again",
             description="Not in the original reference. Queues the message again for one of your webhooks it went "
                         "to (`webhook_id`), or for each of them (no body), to the recipients it was routed to "
                         "there. Audited as `message.redelivery_queued`.",
             response_model=MessageRedeliveryResponse, responses=errors(401, 404))
async def redeliver_message(id: MessageId, account: CurrentAccount, db: SessionDep,  # noqa: A002
                            context: ContextDep, ip: ClientIP,
                            body: RedeliverMessageRequest | None = None) -> MessageRedeliveryResponse:
    queued = await stored_messages.redeliver(db, context.database.messages, context.database.queue, account, id,
                                             webhook_id=body.webhook_id if body else None, ip=ip)
    return MessageRedeliveryResponse(message_id=id, deliveries=[
        QueuedDelivery(job_id=q.job_id, webhook_id=q.webhook_id, status="queued") for q in queued])

