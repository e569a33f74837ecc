"""Every table, one module each; importing this package registers them all on Base.metadata."""

from conduit.db.models.account import Account
from conduit.db.models.api_token import ApiToken
from conduit.db.models.audit_entry import AuditEntry
from conduit.db.models.auth_attempt import AuthAttempt
from conduit.db.models.one_time_token import OneTimeToken
from conduit.db.models.refresh_token import RefreshToken

__all__ = ["Account", "ApiToken", "AuditEntry", "AuthAttempt", "OneTimeToken", "RefreshToken"]
