from __future__ import annotations

from fastapi import APIRouter

from conduit.api.schemas.common import PingResponse

router = APIRouter(tags=["System"])


@router.get("/ping", operation_id="ping",
             description=('Returns `{"status": "ok"}` when the API is reachable. No authentication required.'),
             response_model=PingResponse, summary="Ping")
async def ping() -> PingResponse:
    return PingResponse(status="ok")
