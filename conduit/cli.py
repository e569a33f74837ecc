"""The `conduit` command: serve | api | smtp | worker | migrate | rotate-secrets | accounts."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conduit import __version__
from conduit.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from conduit.services.key_rotation import RotationReport
    from conduit.storage.models import Account

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    try:
        settings = load_settings(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(f"conduit: {exc}", err=True)
        sys.exit(2)
    # What the format does not show is not collected: the logging HOWTO's "Optimization" settings.
    # Otherwise every record finds its caller by walking the stack (_srcfile), and with two records
    # per message that is a visible share of the worker's CPU (docs/performance.md, "Smaller pieces").
    logging._srcfile = None  # noqa: SLF001 - documented there
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    from conduit.observability import logs

    logs.configure(level=settings.log_level, log_format=settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _require_schema(settings: Settings) -> None:
    """A role other than serve does not migrate: on a database without this version's schema it
    stops at once, saying what to do. A database that does not answer yet is waited for by the
    role itself (its readiness check says so meanwhile)."""
    from conduit.observability.health import check_url

    readiness = asyncio.run(check_url(settings.database_url))
    if readiness.unreachable:
        logging.getLogger("conduit.runtime").warning("event=database_unreachable_at_start reason=%r",
                                                     readiness.reason)
    elif not readiness.ready:
        click.echo(f"conduit: {readiness.reason}", err=True)
        sys.exit(1)


def _migrate(settings: Settings) -> None:
    from conduit.storage.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a driver traceback
        click.echo(f"conduit: cannot migrate the database at CONDUIT_DATABASE_URL: {exc}", err=True)
        sys.exit(1)


def _run(main: Coroutine[Any, Any, None]) -> None:
    # The database's threads (SQLite's transactions, conduit/storage/database.py) need the GIL for a
    # moment between statements; a busy event loop holds it for up to the switch interval each
    # time, with SQLite's write lock held meanwhile. A shorter interval than Python's default lets
    # them finish their transactions sooner, which shortens every group commit under load
    # (measured with `make bench`; docs/performance.md, "Smaller pieces").
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
    # The database, its WAL and shared-memory files, the generated secret key: every file Conduit
    # creates is its own user's alone (0600), whatever umask the service manager gave it.
    os.umask(os.umask(0) | 0o077)


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run everything (the embedded default): migrates the database, then runs the SMTP server
    (CONDUIT_SMTP_HOST:CONDUIT_SMTP_PORT) and the HTTP API (CONDUIT_HTTP_HOST:CONDUIT_HTTP_PORT)
    in this process and the delivery worker in CONDUIT_WORKER_PROCESSES child processes (by
    default one on a multi-core machine, none, i.e. in this process, on a single core)."""
    from conduit.observability import multiprocess

    settings = _settings(ctx)
    _migrate(settings)
    if not settings.metrics:
        _serve(settings, ctx.obj["config"])
        return
    # Before anything imports prometheus-client: the worker children write their metrics to files.
    with multiprocess.private_directory():
        _serve(settings, ctx.obj["config"])


def _serve(settings: Settings, config: str | None) -> None:
    from conduit.processes import serve as serve_all

    _run(serve_all(settings, config=config))


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the HTTP API alone (for deployments with several processes on PostgreSQL).
    Does not migrate: run `conduit migrate` once per upgrade."""
    from conduit.runtime import run

    settings = _settings(ctx)
    _require_schema(settings)
    _run(run(settings, roles=frozenset({"api"})))


@main.command()
@click.pass_context
def smtp(ctx: click.Context) -> None:
    """Run the inbound SMTP server alone (any number of them, against one PostgreSQL)."""
    from conduit.runtime import run

    settings = _settings(ctx)
    _require_schema(settings)
    _run(run(settings, roles=frozenset({"smtp"})))


@main.command()
@click.option("--wake-fd", type=int, default=None, hidden=True, help="Set by `conduit serve`: its wake pipe.")
@click.option("--routes-fd", type=int, default=None, hidden=True,
              help="Set by `conduit serve`: where to report changes to routing data.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Set by `conduit serve`: exit with it.")
@click.pass_context
def worker(ctx: click.Context, wake_fd: int | None, routes_fd: int | None, parent_pid: int | None) -> None:
    """Run a delivery worker alone (any number of them: jobs are claimed with SKIP LOCKED)."""
    from conduit.isolation.lifetime import die_with_parent
    from conduit.runtime import run

    if parent_pid is not None:
        die_with_parent(parent_pid)
    settings = _settings(ctx)
    if parent_pid is None:  # `conduit serve` migrated before starting it
        _require_schema(settings)
    _run(run(settings, roles=frozenset({"worker"}), wake_fd=wake_fd, routes_fd=routes_fd))


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
    from conduit.crypto import Crypto
    from conduit.services.key_rotation import rotate_secrets
    from conduit.storage.database import open_database

    database = open_database(settings)
    try:
        return await rotate_secrets(database.sessions,
                                    Crypto(settings.secret_key, settings.previous_secret_key_list),
                                    batch_size=batch_size, dry_run=dry_run)
    finally:
        await database.dispose()


@main.group("accounts")
def accounts_group() -> None:
    """Manage accounts in the database directly (no API needed; give it the same settings).

    Every action is written to the account's audit log with the actor "cli"."""


@accounts_group.command("list")
@click.pass_context
def accounts_list(ctx: click.Context) -> None:
    """List every account: id, email, created, 2FA, disabled."""
    from conduit.services import accounts

    rows = _in_transaction(_settings(ctx), accounts.list_all)
    table = [("ID", "EMAIL", "CREATED", "2FA", "DISABLED")]
    table += [(a.id, a.email, _utc(a.created_at), "on" if a.totp_enabled else "off",
               _utc(a.disabled_at) if a.disabled_at else "no") for a in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@accounts_group.command("create")
@click.argument("email")
@click.pass_context
def accounts_create(ctx: click.Context, email: str) -> None:
    """Create an account, whatever CONDUIT_SIGNUP says. The password is asked for at a terminal,
    else read from the first line of standard input (never from the command line)."""
    from conduit.services import accounts

    settings = _settings(ctx)
    password = _read_password()

    async def create(session: AsyncSession) -> Account:
        return await accounts.create_by_operator(session, email=email, password=password)

    account = _in_transaction(settings, create)
    click.echo(f"conduit: created account {account.id} ({account.email})")


@accounts_group.command("disable")
@click.argument("account")
@click.pass_context
def accounts_disable(ctx: click.Context, account: str) -> None:
    """Disable an account (by id or email): it cannot sign in, its sessions end, its access and
    API tokens are refused, and mail to its webhooks is refused at RCPT (550 5.2.1)."""
    _set_disabled(ctx, account, disabled=True)


@accounts_group.command("enable")
@click.argument("account")
@click.pass_context
def accounts_enable(ctx: click.Context, account: str) -> None:
    """Enable a disabled account (by id or email). Its API tokens work again; sessions ended by
    the disabling do not come back."""
    _set_disabled(ctx, account, disabled=False)


@accounts_group.command("delete")
@click.argument("account")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def accounts_delete(ctx: click.Context, account: str, yes: bool) -> None:
    """Delete an account (by id or email) and everything it owns: domains, policies, webhooks,
    delivery logs, tokens and its audit log."""
    from conduit.services import accounts

    settings = _settings(ctx)
    if not yes:
        click.confirm(f"Delete account {account} and everything it owns?", abort=True, err=True)

    async def delete(session: AsyncSession) -> Account:
        found = await accounts.find_for_operator(session, account)
        await accounts.delete_by_operator(session, found)
        return found

    deleted = _in_transaction(settings, delete)
    # The audit log goes with the account: the process log keeps the record.
    logging.getLogger("conduit.cli").warning("event=account_deleted actor=cli account=%s", deleted.id)
    click.echo(f"conduit: deleted account {deleted.id} ({deleted.email})")


def _set_disabled(ctx: click.Context, reference: str, *, disabled: bool) -> None:
    from conduit.services import accounts

    settings = _settings(ctx)

    async def change(session: AsyncSession) -> tuple[Account, bool]:
        found = await accounts.find_for_operator(session, reference)
        return found, await accounts.set_disabled(session, found, disabled=disabled)

    account, changed = _in_transaction(settings, change)
    state = "disabled" if disabled else "enabled"
    click.echo(f"conduit: {'' if changed else 'already '}{state} account {account.id} ({account.email})")


def _read_password() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    line = sys.stdin.readline()
    if not line.strip():
        click.echo("conduit: give the password on standard input (one line) or at a terminal", err=True)
        sys.exit(2)
    return line.rstrip("\r\n")


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, committed when it returns; errors become one line."""
    from conduit.errors import ConduitError
    from conduit.storage.database import open_database

    async def run() -> T:
        database = open_database(settings)
        try:
            async with database.sessions() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except ConduitError as exc:
        click.echo(f"conduit: {exc.message}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a driver traceback
        click.echo(f"conduit: cannot use the database at CONDUIT_DATABASE_URL: {exc}", err=True)
        sys.exit(1)
