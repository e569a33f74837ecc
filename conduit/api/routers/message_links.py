"""Signed links (beyond the reference): a payload's ``raw_url`` and ``attachments[].url``, which
work without a bearer token while the message is kept (conduit/services/message_links.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from conduit.api.deps import ContextDep, SessionDep
from conduit.api.routers import errors
from conduit.api.routers.messages import MessageId, media_type, safe_filename
from conduit.services import stored_messages

router = APIRouter(prefix="/links/messages", tags=["Messages"])
Expires = Annotated[str, Query(max_length=20, description="When the link expires (Unix time), as signed.")]
Signature = Annotated[str, Query(max_length=100, description="The link's signature.")]
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/{id}/raw", operation_id="getRawMessageByLink", summary="Download a raw message by its signed link",
            description="Not in the original reference. The payload's `raw_url`: the raw message without a bearer "
                        "token. A link that was changed is a 403 `invalid_signature`; an expired one, or one whose "
                        "message is no longer kept, a 410.",
            response_class=Response,
            responses={**errors(403, 410), 200: {"description": "The raw message",
                                                 "content": {"message/rfc822": _BINARY}}})
async def raw_by_link(id: MessageId, expires: Expires, signature: Signature, db: SessionDep,  # noqa: A002
                      context: ContextDep) -> Response:
    raw = await stored_messages.raw_by_link(db, context.database.messages, id, expires=expires, signature=signature,
                                            settings=context.settings)
    return Response(content=raw, media_type="message/rfc822",
                    headers={"Content-Disposition": safe_filename(f"{id}.eml", "message.eml")})


@router.get("/{id}/attachments/{index}", operation_id="getMessageAttachmentByLink",
            summary="Download an attachment by its signed link",
            description="Not in the original reference. A payload's `attachments[].url` (given when the attachments "
                        "were too large to send inline): the decoded content without a bearer token, with its own "
                        "content type, as a download. 403 for a changed link, 410 for an expired one.",
            response_class=Response,
            responses={**errors(403, 404, 410, 429, 503),
                       200: {"description": "The attachment's content, with its own content type",
                             "content": {"*/*": _BINARY}}})
async def attachment_by_link(id: MessageId, expires: Expires, signature: Signature, db: SessionDep,  # noqa: A002
                             context: ContextDep,
                             index: int = Path(ge=0, le=10_000, description="The attachment's position (0-based)"),
                             ) -> Response:
    part = await stored_messages.attachment_by_link(db, context.database.messages, id, index, expires=expires,
                                                    signature=signature, renders=context.renders,
                                                    settings=context.settings)
    return Response(content=part.data, media_type=media_type(part.content_type),
                    headers={"Content-Disposition": safe_filename(part.filename, f"attachment-{index}")})
