"""The REST API (FastAPI): thin routers over conduit.services."""
