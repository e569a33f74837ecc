"""The OpenAPI document's ``webhooks`` section: the request Conduit sends to a webhook's target.

Nothing here is served: the operation only describes the POST a receiver gets, from the one
definition of the payload and its headers in conduit/mail/payload_schema.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header

from conduit.mail.payload_schema import EmailReceived, SignatureHeaders

EVENT = "email.received"
_HEADERS = SignatureHeaders.model_fields


def _header(name: str) -> Any:
    info = _HEADERS[name]
    return Header(alias=info.alias, description=info.description, examples=info.examples)


def install(app: FastAPI) -> None:
    @app.webhooks.post(
        EVENT, operation_id="emailReceived", summary="A message was received for the webhook's address",
        description=("Conduit POSTs this JSON body (or, with a `payload_template`, the rendered template) to the "
                     "webhook's `target_url`, with the Standard Webhooks signature headers, `User-Agent: "
                     "Conduit/<version>` and the webhook's `custom_headers`. Check the signature with any Standard "
                     "Webhooks library and the webhook's `secret`. Answer 2xx once the message is yours. 408, 429 "
                     "and 5xx answers and failed connections are retried on the schedule (CONDUIT_RETRY_SCHEDULE; "
                     "a `Retry-After` is honoured); 410 deactivates the webhook; any other answer fails the delivery. "
                     "A delivery may arrive twice (same `webhook-id`)."),
        tags=["Webhook deliveries"], status_code=204,
        responses={200: {"description": "Delivered (any 2xx)."},
                   410: {"description": "Gone: Conduit deactivates the webhook and stops delivering."},
                   429: {"description": "Retried later, after `Retry-After` if given."},
                   "4XX": {"description": "Any other 4xx: the delivery fails and is not retried."},
                   "5XX": {"description": "Retried later."}})
    def email_received(  # never called: documents the request
        payload: EmailReceived,  # noqa: ARG001 - documents the request body
        webhook_id: Annotated[str, _header("webhook_id")],  # noqa: ARG001 - documents the header
        webhook_timestamp: Annotated[str, _header("webhook_timestamp")],  # noqa: ARG001 - documents the header
        webhook_signature: Annotated[str, _header("webhook_signature")],  # noqa: ARG001 - documents the header
    ) -> None:
        return None
