"""Re-encrypt every secret stored encrypted under the current CONDUIT_SECRET_KEY.

Why: after a key change, values written under an old key only decrypt while that key stays in
CONDUIT_PREVIOUS_SECRET_KEYS. Rotating them lets the operator drop the old key. Rows are read in
primary-key order, a batch per transaction, so a large table never sits in one long transaction
and an interrupted run loses nothing. Running it again is harmless: values already under the
current key are counted and left alone. A value no configured key decrypts is reported and left
as it is (the run then fails, so the operator notices before dropping a key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conduit.crypto import Crypto, SecretKeyMismatch
from conduit.storage.engine import transaction
from conduit.storage.models import Account, Webhook

# Every column holding a Fernet token: (model, column name). A new encrypted column goes here.
_EncryptedModel = type[Account] | type[Webhook]
ENCRYPTED_COLUMNS: tuple[tuple[_EncryptedModel, str], ...] = ((Account, "totp_secret"), (Webhook, "secret_encrypted"))
DEFAULT_BATCH_SIZE = 500


@dataclass
class ColumnReport:
    """Counts for one column: ``rotated`` re-encrypted now, ``current`` already under the current
    key, ``changed`` rewritten by someone else meanwhile (run again), ``undecryptable`` row ids."""

    column: str
    rotated: int = 0
    current: int = 0
    changed: int = 0
    undecryptable: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    columns: list[ColumnReport]

    @property
    def rotated(self) -> int:
        return sum(c.rotated for c in self.columns)

    @property
    def current(self) -> int:
        return sum(c.current for c in self.columns)

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.columns)

    @property
    def undecryptable(self) -> int:
        return sum(len(c.undecryptable) for c in self.columns)

    @property
    def complete(self) -> bool:
        """Every stored secret is now under the current key: previous keys may be dropped."""
        return self.changed == 0 and self.undecryptable == 0


async def rotate_secrets(sessions: async_sessionmaker[AsyncSession], crypto: Crypto, *,
                         batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False) -> RotationReport:
    """Re-encrypt every encrypted column under ``crypto``'s current key; ``dry_run`` only counts."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    reports = []
    for model, name in ENCRYPTED_COLUMNS:
        report = ColumnReport(column=f"{model.__tablename__}.{name}")
        last_id = ""
        while True:
            async with transaction(sessions) as session:
                rows = await _batch(session, model, name, after=last_id, limit=batch_size)
                for row_id, value in rows:
                    await _rotate_one(session, crypto, model, name, row_id, value, report, dry_run=dry_run)
            if len(rows) < batch_size:
                break
            last_id = rows[-1][0]
        reports.append(report)
    return RotationReport(columns=reports)


async def _batch(session: AsyncSession, model: _EncryptedModel, name: str, *,
                 after: str, limit: int) -> list[tuple[str, str]]:
    column = getattr(model, name)
    query = (select(model.id, column).where(model.id > after, column.is_not(None))
             .order_by(model.id).limit(limit))
    return [(row_id, value) for row_id, value in (await session.execute(query)).all()]


async def _rotate_one(session: AsyncSession, crypto: Crypto, model: _EncryptedModel, name: str, row_id: str, value: str,
                      report: ColumnReport, *, dry_run: bool) -> None:
    if crypto.is_current(value):
        report.current += 1
        return
    try:
        new_value = crypto.reencrypt(value)
    except SecretKeyMismatch:
        report.undecryptable.append(row_id)
        return
    if dry_run:
        report.rotated += 1
        return
    column = getattr(model, name)
    # Only if nobody rewrote the value since it was read; updated_at is kept: nothing the owner sees changed.
    result = cast(CursorResult[Any], await session.execute(
        update(model).where(model.id == row_id, column == value)
        .values({name: new_value, "updated_at": model.updated_at})
        .execution_options(synchronize_session=False)))
    if result.rowcount == 1:
        report.rotated += 1
    else:
        report.changed += 1
