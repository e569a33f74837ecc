from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from conduit.api.deps import AppContext, ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.management import (
    CreateWebhookRequest,
    DeliveryLogResponse,
    RedeliveryResponse,
    SimulateWebhookRequest,
    SimulateWebhookResponse,
    UpdateWebhookRequest,
    WebhookResponse,
)
from conduit.db.models import Webhook
from conduit.delivery.simulate import simulate
from conduit.services import webhooks
from conduit.services.webhooks import WebhookContext

router = APIRouter(prefix="/webhooks", tags=["Webhooks"])


def _ctx(context: AppContext) -> WebhookContext:
    return WebhookContext(crypto=context.crypto, resolver=context.resolver,
                          allow_private_targets=context.settings.allow_private_targets,
                          public_domains=context.settings.public_domain_names)


def _out(webhook: Webhook, context: AppContext) -> WebhookResponse:
    return WebhookResponse(
        id=webhook.id, name=webhook.name, address=webhook.address, target_url=webhook.target_url,
        active=webhook.active, custom_headers=webhook.custom_headers, payload_template=webhook.payload_template,
        rate_limit=webhook.rate_limit, secret=context.crypto.decrypt(webhook.secret_encrypted),
        smtp_security_policy_id=webhook.smtp_security_policy_id, created_at=webhook.created_at,
        updated_at=webhook.updated_at)


@router.get("", operation_id="listWebhooks", summary="List webhooks", response_model=list[WebhookResponse],
            responses=errors(401))
async def list_webhooks(account: CurrentAccount, db: SessionDep, context: ContextDep):
    return [_out(w, context) for w in await webhooks.list_for(db, account)]


@router.post("", operation_id="createWebhook", summary="Create webhook", status_code=201,
             response_model=WebhookResponse, responses=errors(401, 409),
             response_description="Webhook created (includes secret)")
async def create_webhook(body: CreateWebhookRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                         ip: ClientIP):
    webhook = await webhooks.create(db, account, fields=body.model_dump(exclude_unset=True), ctx=_ctx(context), ip=ip)
    return _out(webhook, context)


@router.get("/{id}", operation_id="getWebhook", summary="Get webhook", response_model=WebhookResponse,
            responses=errors(401, 404))
async def get_webhook(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep):  # noqa: A002
    return _out(await webhooks.get(db, account, id), context)


@router.put("/{id}", operation_id="updateWebhook", summary="Update webhook", response_model=WebhookResponse,
            responses=errors(401, 404, 409))
async def update_webhook(id: str, body: UpdateWebhookRequest, account: CurrentAccount, db: SessionDep,  # noqa: A002
                         context: ContextDep, ip: ClientIP):
    webhook = await webhooks.update(db, account, id, changes=body.model_dump(exclude_unset=True), ctx=_ctx(context),
                                    ip=ip)
    return _out(webhook, context)


@router.delete("/{id}", operation_id="deleteWebhook", summary="Delete webhook", status_code=204,
               responses=errors(401, 404))
async def delete_webhook(id: str, account: CurrentAccount, db: SessionDep, ip: ClientIP) -> Response:  # noqa: A002
    await webhooks.delete_webhook(db, account, id, ip=ip)
    return Response(status_code=204)


@router.get("/{id}/logs", operation_id="listDeliveryLogs", summary="List delivery logs for a webhook",
            response_model=list[DeliveryLogResponse], responses=errors(401, 404))
async def list_delivery_logs(
    id: str,  # noqa: A002
    account: CurrentAccount,
    db: SessionDep,
    page: int = Query(1, ge=1, description="Page number (1-based)"),
    page_size: int = Query(50, ge=1, le=200, description="Number of results per page"),
    status: Literal["delivered", "failed", "retrying", "rejected"] | None = Query(
        None, description="Only logs with this outcome"),
):
    return await webhooks.list_logs(db, account, id, page=page, page_size=page_size, status=status)


@router.get("/{id}/logs/{logId}", operation_id="getDeliveryLog", summary="Get a single delivery log entry",
            response_model=DeliveryLogResponse, responses=errors(401, 404))
async def get_delivery_log(id: str, logId: str, account: CurrentAccount, db: SessionDep):  # noqa: A002, N803
    return await webhooks.get_log(db, account, id, logId)


@router.post("/{id}/simulate", operation_id="simulateWebhook",
             summary="Simulate an incoming email and trigger the webhook",
             description="Constructs a synthetic email message and delivers it to the webhook target, recording the "
                         "result in the delivery log with a simulated flag.",
             response_model=SimulateWebhookResponse, responses=errors(401, 404),
             response_description="Delivery attempt completed (check http_status / error for outcome)")
async def simulate_webhook(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep,  # noqa: A002
                           body: SimulateWebhookRequest | None = None):
    body = body or SimulateWebhookRequest()
    outcome = await simulate(db, account, id, sender=body.from_, subject=body.subject, text=body.text,
                             settings=context.settings, crypto=context.crypto, client=context.http)
    return SimulateWebhookResponse(http_status=outcome.status or 0, duration_ms=outcome.duration_ms,
                                   error=outcome.error or "", simulated=True)


@router.post("/{id}/logs/{logId}/redeliver", operation_id="redeliverMessage", status_code=202,
             summary="Queue the message of a delivery log for delivery again",
             description="Not in the original reference. 404 when the raw message is no longer stored "
                         "(CONDUIT_KEEP_RAW_DAYS).",
             response_model=RedeliveryResponse, responses=errors(401, 404))
async def redeliver_message(id: str, logId: str, account: CurrentAccount, db: SessionDep):  # noqa: A002, N803
    job = await webhooks.redeliver(db, account, id, logId)
    return RedeliveryResponse(job_id=job.id, message_id=job.message_id, status="queued")
