"""Schema upgrades with Alembic, callable from the CLI and from `serve` before the loop starts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision (idempotent). Runs its own event loop."""
    command.upgrade(alembic_config(database_url), "head")
