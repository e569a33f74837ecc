"""Every table, one module each; importing this package registers them all on Base.metadata."""

from conduit.db.models.account import Account
from conduit.db.models.api_token import ApiToken
from conduit.db.models.audit_entry import AuditEntry
from conduit.db.models.auth_attempt import AuthAttempt
from conduit.db.models.delivery_job import DeliveryJob
from conduit.db.models.delivery_log import DeliveryLog
from conduit.db.models.domain import Domain
from conduit.db.models.message import Message
from conduit.db.models.one_time_token import OneTimeToken
from conduit.db.models.rate_bucket import RateBucket
from conduit.db.models.refresh_token import RefreshToken
from conduit.db.models.smtp_policy import SmtpPolicy
from conduit.db.models.webhook import Webhook

__all__ = ["Account", "ApiToken", "AuditEntry", "AuthAttempt", "DeliveryJob", "DeliveryLog", "Domain", "Message",
           "OneTimeToken", "RateBucket", "RefreshToken", "SmtpPolicy", "Webhook"]
