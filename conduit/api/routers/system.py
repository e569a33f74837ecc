from __future__ import annotations

from fastapi import APIRouter

from conduit.api.schemas.common import PingResponse

router = APIRouter(tags=["System"])


@router.get("/ping", operation_id="ping", response_model=PingResponse, summary="Ping")
async def ping() -> PingResponse:
    return PingResponse(status="ok")
