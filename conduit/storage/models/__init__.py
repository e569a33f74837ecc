"""Every table, one module each; importing this package registers them all on Base.metadata."""

from conduit.storage.models.account import Account
from conduit.storage.models.api_token import ApiToken
from conduit.storage.models.audit_entry import AuditEntry
from conduit.storage.models.auth_attempt import AuthAttempt
from conduit.storage.models.delivery_job import DeliveryJob
from conduit.storage.models.delivery_log import DeliveryLog
from conduit.storage.models.domain import Domain
from conduit.storage.models.message import Message
from conduit.storage.models.one_time_token import OneTimeToken
from conduit.storage.models.rate_bucket import RateBucket
from conduit.storage.models.refresh_token import RefreshToken
from conduit.storage.models.refusal import Refusal, RefusalWindow
from conduit.storage.models.smtp_policy import SmtpPolicy
from conduit.storage.models.webhook import Webhook

__all__ = ["Account", "ApiToken", "AuditEntry", "AuthAttempt", "DeliveryJob", "DeliveryLog", "Domain", "Message",
           "OneTimeToken", "RateBucket", "RefreshToken", "Refusal",
           "RefusalWindow", "SmtpPolicy", "Webhook"]
