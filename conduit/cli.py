"""The `conduit` command: serve | api | smtp | worker | migrate."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from conduit import __version__
from conduit.config import ConfigError, Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    try:
        settings = load_settings(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(f"conduit: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _migrate(settings: Settings) -> None:
    from conduit.db.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a driver traceback
        click.echo(f"conduit: cannot migrate the database at CONDUIT_DATABASE_URL: {exc}", err=True)
        sys.exit(1)


def _run(settings: Settings, roles: frozenset[str]) -> None:
    from conduit.runtime import run

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(settings, roles=roles))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML file of settings (names as in the README, without the CONDUIT_ prefix, lower case); "
                   "environment variables win over it.")
@click.version_option(__version__, prog_name="conduit")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Conduit receives email over SMTP and delivers it, parsed and signed, to HTTP webhooks.

    Settings come from CONDUIT_* environment variables (see the README).
    """
    ctx.obj = {"config": config}


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run everything in one process (the embedded default): migrates the database, then runs the
    SMTP server (CONDUIT_SMTP_HOST:CONDUIT_SMTP_PORT), the delivery worker and the HTTP API
    (CONDUIT_HTTP_HOST:CONDUIT_HTTP_PORT)."""
    settings = _settings(ctx)
    _migrate(settings)
    _run(settings, frozenset({"api", "smtp", "worker"}))


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the HTTP API alone (for deployments with several processes on PostgreSQL).
    Does not migrate: run `conduit migrate` once per upgrade."""
    _run(_settings(ctx), frozenset({"api"}))


@main.command()
@click.pass_context
def smtp(ctx: click.Context) -> None:
    """Run the inbound SMTP server alone (any number of them, against one PostgreSQL)."""
    _run(_settings(ctx), frozenset({"smtp"}))


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a delivery worker alone (any number of them: jobs are claimed with SKIP LOCKED)."""
    _run(_settings(ctx), frozenset({"worker"}))


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Upgrade the database schema to this version of Conduit (safe to run repeatedly)."""
    settings = _settings(ctx)
    _migrate(settings)
    click.echo("conduit: database schema is up to date")
