from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from conduit.api.deps import AppContext, ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.pagination import page_links
from conduit.api.routers import errors
from conduit.api.schemas.management import (
    CreateWebhookRequest,
    DeliveryLogResponse,
    PayloadPreviewRequest,
    PayloadPreviewResponse,
    RedeliveryResponse,
    SimulateWebhookRequest,
    SimulateWebhookResponse,
    UpdateWebhookRequest,
    WebhookResponse,
)
from conduit.services import simulate as simulation
from conduit.services import webhooks
from conduit.services.webhooks import WebhookContext
from conduit.storage.models import DeliveryLog, Webhook

router = APIRouter(prefix="/webhooks", tags=["Webhooks"])


def _ctx(context: AppContext) -> WebhookContext:
    return WebhookContext(crypto=context.crypto, resolver=context.resolver,
                          allow_private_targets=context.settings.allow_private_targets,
                          public_domains=context.settings.public_domain_names, renders=context.renders)


def _out(webhook: Webhook, context: AppContext) -> WebhookResponse:
    return WebhookResponse(
        id=webhook.id, name=webhook.name, address=webhook.address, target_url=webhook.target_url,
        active=webhook.active, custom_headers=webhook.custom_headers, payload_template=webhook.payload_template,
        rate_limit=webhook.rate_limit, secret=context.crypto.decrypt(webhook.secret_encrypted),
        smtp_security_policy_id=webhook.smtp_security_policy_id, created_at=webhook.created_at,
        updated_at=webhook.updated_at,
        delivery_mode="synchronous" if webhook.delivery_mode == "synchronous" else "queued",
        sync_timeout_ms=webhook.sync_timeout_ms)


@router.get("", operation_id="listWebhooks",
             description=("Lists the account's webhooks, with their signing secrets."),
             summary="List webhooks", response_model=list[WebhookResponse],
            responses=errors(401))
async def list_webhooks(account: CurrentAccount, db: SessionDep, context: ContextDep) -> list[WebhookResponse]:
    return [_out(w, context) for w in await webhooks.list_for(db, account)]


@router.post("", operation_id="createWebhook",
             description=("Creates a webhook: mail to `address` is POSTed to `target_url`, signed with `secret` "
                          "(Standard Webhooks). What the receiver gets is described in this document's `webhooks` "
                          "section (`email.received`)."),
             summary="Create webhook", status_code=201,
             response_model=WebhookResponse, responses=errors(401, 409),
             response_description="Webhook created (includes secret)")
async def create_webhook(body: CreateWebhookRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                         ip: ClientIP) -> WebhookResponse:
    webhook = await webhooks.create(db, account, fields=body.model_dump(exclude_unset=True), ctx=_ctx(context), ip=ip)
    return _out(webhook, context)


@router.get("/{id}", operation_id="getWebhook",
             description=("Returns one of the account's webhooks, with its signing secret."),
             summary="Get webhook", response_model=WebhookResponse,
            responses=errors(401, 404))
async def get_webhook(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep) -> WebhookResponse:  # noqa: A002
    return _out(await webhooks.get(db, account, id), context)


@router.put("/{id}", operation_id="updateWebhook",
             description=("Changes the fields sent and keeps the others (a partial update). `active: false` pauses the "
                          "address (mail is refused at SMTP, queued mail is held); `clear_security_policy: true` "
                          "removes the policy."),
             summary="Update webhook", response_model=WebhookResponse,
            responses=errors(401, 404, 409))
async def update_webhook(id: str, body: UpdateWebhookRequest, account: CurrentAccount, db: SessionDep,  # noqa: A002
                         context: ContextDep, ip: ClientIP) -> WebhookResponse:
    webhook = await webhooks.update(db, account, id, changes=body.model_dump(exclude_unset=True), ctx=_ctx(context),
                                    ip=ip)
    return _out(webhook, context)


@router.delete("/{id}", operation_id="deleteWebhook",
             description=("Deletes the webhook, its delivery logs and its queued deliveries; its address takes no more "
                          "mail."),
             summary="Delete webhook", status_code=204,
               responses=errors(401, 404))
async def delete_webhook(id: str, account: CurrentAccount, db: SessionDep, ip: ClientIP) -> Response:  # noqa: A002
    await webhooks.delete_webhook(db, account, id, ip=ip)
    return Response(status_code=204)


@router.get("/{id}/logs", operation_id="listDeliveryLogs",
             description=("Lists the webhook's delivery attempts and SMTP refusals, newest first, a page at a time; "
                          "`status` filters by outcome. Beyond the reference: a `Link` header (RFC 8288) gives the "
                          "`next` and `prev` pages, where there are such pages, with the same query."),
             summary="List delivery logs for a webhook",
            response_model=list[DeliveryLogResponse], responses={**errors(401, 404), 200: {"headers": {"Link": {
                "description": "RFC 8288 links to the `next` and `prev` pages, where there are such pages.",
                "schema": {"type": "string"}}}}})
async def list_delivery_logs(
    id: str,  # noqa: A002
    account: CurrentAccount,
    db: SessionDep,
    request: Request,
    response: Response,
    page: int = Query(1, ge=1, description="Page number (1-based)"),
    page_size: int = Query(50, ge=1, le=200, description="Number of results per page"),
    status: Literal["delivered", "failed", "retrying", "rejected"] | None = Query(
        None, description="Only logs with this outcome"),
) -> list[DeliveryLog]:
    found = await webhooks.list_logs(db, account, id, page=page, page_size=page_size, status=status)
    links = page_links(request, page=page, has_next=found.has_next)
    if links:
        response.headers["Link"] = links
    return found.items


@router.get("/{id}/logs/{logId}", operation_id="getDeliveryLog",
             description=("Returns one delivery attempt or SMTP refusal of the webhook."),
             summary="Get a single delivery log entry",
            response_model=DeliveryLogResponse, responses=errors(401, 404))
async def get_delivery_log(id: str, logId: str, account: CurrentAccount, db: SessionDep) -> DeliveryLog:  # noqa: A002, N803
    return await webhooks.get_log(db, account, id, logId)


@router.post("/{id}/simulate", operation_id="simulateWebhook",
             summary="Simulate an incoming email and trigger the webhook",
             description="Constructs a synthetic email message and delivers it to the webhook target, recording the "
                         "result in the delivery log with a simulated flag.",
             response_model=SimulateWebhookResponse, responses=errors(401, 404),
             response_description="Delivery attempt completed (check http_status / error for outcome)")
async def simulate_webhook(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep,  # noqa: A002
                           body: SimulateWebhookRequest | None = None) -> SimulateWebhookResponse:
    body = body or SimulateWebhookRequest()
    outcome = await simulation.simulate(db, account, id, sender=body.from_, subject=body.subject, text=body.text,
                             settings=context.settings, crypto=context.crypto, client=context.http,
                             renders=context.renders)
    return SimulateWebhookResponse(http_status=outcome.status or 0, duration_ms=outcome.duration_ms,
                                   error=outcome.error or "", simulated=True)


@router.post("/{id}/logs/{logId}/redeliver", operation_id="redeliverMessage", status_code=202,
             summary="Queue the message of a delivery log for delivery again",
             description="Not in the original reference. 404 when the raw message is no longer stored "
                         "(it is kept for CONDUIT_MESSAGE_RETENTION_DAYS, default 3).",
             response_model=RedeliveryResponse, responses=errors(401, 404))
async def redeliver_message(id: str, logId: str, account: CurrentAccount, db: SessionDep,  # noqa: A002, N803
                            context: ContextDep) -> RedeliveryResponse:
    queued = await webhooks.redeliver(db, context.database.messages, context.database.queue, account, id, logId)
    return RedeliveryResponse(job_id=queued.job_id, message_id=queued.message_id, status="queued")


@router.post("/preview", operation_id="previewPayload", summary="Render a payload for a sample message",
             description="Not in the original reference. Renders the body a delivery of a synthetic message "
                         "(built like simulate's) would send, with the given template or the webhook's, through the "
                         "same rendering code and limits as deliveries, and returns it without sending anything. "
                         "A template that fails to compile or render is a 422 naming the line.",
             response_model=PayloadPreviewResponse, responses=errors(401, 404))
async def preview_payload(body: PayloadPreviewRequest, account: CurrentAccount, db: SessionDep,
                          context: ContextDep) -> PayloadPreviewResponse:
    rendered, content_type = await simulation.preview(
        db, account, webhook_id=body.webhook_id, template=body.payload_template, address=body.address,
        sender=body.from_, subject=body.subject, text=body.text, settings=context.settings, renders=context.renders)
    return PayloadPreviewResponse(body=rendered.decode("utf-8", errors="replace"), content_type=content_type)
