"""The `conduit` command: serve | api | smtp | worker | migrate | rotate-secrets."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import click

from conduit import __version__
from conduit.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from conduit.services.key_rotation import RotationReport


def _settings(ctx: click.Context) -> Settings:
    try:
        settings = load_settings(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(f"conduit: {exc}", err=True)
        sys.exit(2)
    # What the format does not show is not collected: the logging HOWTO's "Optimization" settings.
    # Every record found its caller by walking the stack (_srcfile); two records per message made
    # logging 4 % of the worker's CPU (10.6 -> 7.3 us per record).
    logging._srcfile = None  # noqa: SLF001 - documented there
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
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


def _run(main: Coroutine[Any, Any, None]) -> None:
    # The database's threads (SQLite's transactions, conduit/db/engine.py) need the GIL for a
    # moment between statements; a busy event loop holds it for up to the switch interval (5 ms
    # by default) each time, with SQLite's write lock held meanwhile. At 0.5 ms a group commit
    # took 5.4-6.0 instead of 8.5-9.1 ms from submit to end (4 KiB, saturated); 0.2 ms gave a
    # little more again (1,187 against 1,133 messages/s, p99 34 against 75 ms).
    sys.setswitchinterval(0.0002)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main)


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
    """Run everything (the embedded default): migrates the database, then runs the SMTP server
    (CONDUIT_SMTP_HOST:CONDUIT_SMTP_PORT) and the HTTP API (CONDUIT_HTTP_HOST:CONDUIT_HTTP_PORT)
    in this process and the delivery worker in CONDUIT_WORKER_PROCESSES child processes (by
    default one on a multi-core machine, none, i.e. in this process, on a single core)."""
    from conduit.processes import serve as serve_all

    settings = _settings(ctx)
    _migrate(settings)
    _run(serve_all(settings, config=ctx.obj["config"]))


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the HTTP API alone (for deployments with several processes on PostgreSQL).
    Does not migrate: run `conduit migrate` once per upgrade."""
    from conduit.runtime import run

    _run(run(_settings(ctx), roles=frozenset({"api"})))


@main.command()
@click.pass_context
def smtp(ctx: click.Context) -> None:
    """Run the inbound SMTP server alone (any number of them, against one PostgreSQL)."""
    from conduit.runtime import run

    _run(run(_settings(ctx), roles=frozenset({"smtp"})))


@main.command()
@click.option("--wake-fd", type=int, default=None, hidden=True, help="Set by `conduit serve`: its wake pipe.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Set by `conduit serve`: exit with it.")
@click.pass_context
def worker(ctx: click.Context, wake_fd: int | None, parent_pid: int | None) -> None:
    """Run a delivery worker alone (any number of them: jobs are claimed with SKIP LOCKED)."""
    from conduit.processes import die_with_parent
    from conduit.runtime import run

    if parent_pid is not None:
        die_with_parent(parent_pid)
    _run(run(_settings(ctx), roles=frozenset({"worker"}), wake_fd=wake_fd))


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Upgrade the database schema to this version of Conduit (safe to run repeatedly)."""
    settings = _settings(ctx)
    _migrate(settings)
    click.echo("conduit: database schema is up to date")


@main.command("rotate-secrets")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Rows re-encrypted per transaction.")
@click.option("--dry-run", is_flag=True, help="Only count what would be re-encrypted; write nothing.")
@click.pass_context
def rotate_secrets(ctx: click.Context, batch_size: int, dry_run: bool) -> None:
    """Re-encrypt every stored TOTP and webhook secret under the current CONDUIT_SECRET_KEY.

    Run it once every Conduit process runs with the new key in CONDUIT_SECRET_KEY and the old
    one in CONDUIT_PREVIOUS_SECRET_KEYS (give it the same settings); once it reports that every
    secret is under the current key, the old key can be removed. Safe to run repeatedly, and
    while Conduit runs. Exits 1 if a secret cannot be decrypted with any configured key."""
    settings = _settings(ctx)
    try:
        report = asyncio.run(_rotate(settings, batch_size=batch_size, dry_run=dry_run))
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a driver traceback
        click.echo(f"conduit: cannot rotate the secrets in the database at CONDUIT_DATABASE_URL: {exc}", err=True)
        sys.exit(1)
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    for column in report.columns:
        click.echo(f"conduit: {column.column}: {verb} {column.rotated}, already under the current key "
                   f"{column.current}, changed meanwhile {column.changed}, "
                   f"undecryptable {len(column.undecryptable)}")
        if column.undecryptable:
            click.echo(f"conduit: {column.column}: cannot decrypt rows {', '.join(column.undecryptable)}: "
                       "list the key they were written with in CONDUIT_PREVIOUS_SECRET_KEYS", err=True)
    if report.undecryptable:
        sys.exit(1)
    if report.changed:
        click.echo("conduit: some secrets changed while rotating: run the command again")
    elif not dry_run:
        click.echo("conduit: every stored secret is under the current key; "
                   "CONDUIT_PREVIOUS_SECRET_KEYS can be emptied")


async def _rotate(settings: Settings, *, batch_size: int, dry_run: bool) -> RotationReport:
    from conduit.db.engine import create_engine, session_factory
    from conduit.services.crypto import Crypto
    from conduit.services.key_rotation import rotate_secrets

    engine = create_engine(settings.database_url)
    try:
        return await rotate_secrets(session_factory(engine),
                                    Crypto(settings.secret_key, settings.previous_secret_key_list),
                                    batch_size=batch_size, dry_run=dry_run)
    finally:
        await engine.dispose()
