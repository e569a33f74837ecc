"""GET /metrics, /health/live and /health/ready as Starlette routes: mounted in the API (kept out
of its OpenAPI document: they are not part of the API) and served alone on
CONDUIT_METRICS_PORT (conduit/observability/server.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conduit.observability import health
from conduit.storage.database import Database

PROBE_PATHS = frozenset({"/metrics", "/health/live", "/health/ready"})


def routes(database: Database, *, with_metrics: bool) -> list[Route]:
    """The probes over ``database`` (the role's own, so readiness sees what the role sees)."""

    async def live(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        readiness = await health.check(database.engine)
        if readiness.ready:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": readiness.reason}, status_code=503)

    found = [Route("/health/live", live, methods=["GET"], include_in_schema=False),
             Route("/health/ready", ready, methods=["GET"], include_in_schema=False)]
    if with_metrics:
        from conduit.observability import metrics
        from conduit.observability.queue_stats import QueueStats

        queue = QueueStats(database.sessions)

        async def scrape(_: Request) -> Response:
            await queue.refresh()
            return Response(metrics.exposition([queue]), media_type=metrics.CONTENT_TYPE)

        found.append(Route("/metrics", scrape, methods=["GET"], include_in_schema=False))
    return found
