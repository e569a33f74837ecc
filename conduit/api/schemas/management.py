"""Bodies of the Domains, SMTP Policies and Webhooks groups.

Request bodies have every field optional so PUT can be a partial update: the services receive
only the fields the client sent (``model_dump(exclude_unset=True)``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from conduit.api.schemas.common import Model, RequestBody, Timestamp


class CreateDomainRequest(RequestBody):
    name: str


class DomainResponse(Model):
    id: str
    name: str
    account_id: str = Field(description="Empty for public domains.")
    verification_token: str = Field(description="Publish it as a TXT record at _conduit-verify.<name>. "
                                                "Empty for public domains.")
    verified: bool
    is_public: bool
    created_at: Timestamp
    updated_at: Timestamp


class SmtpSecurityPolicyRequest(RequestBody):
    name: str | None = None
    allowed_source_ips: str | None = Field(default=None, description="IPs and CIDRs, comma- or space-separated.")
    allowed_spf_domains: str | None = Field(default=None, description="Domain names, comma- or space-separated.")
    allowed_dkim_domains: str | None = Field(default=None, description="Domain names, comma- or space-separated.")
    require_dkim: bool | None = None
    require_smtp_auth: bool | None = None
    require_spf: bool | None = None
    smtp_credentials: str | None = Field(default=None, description="username:password; an empty string removes "
                                                                  "the credentials.")


class SmtpSecurityPolicyResponse(BaseModel):
    id: str
    name: str
    allowed_source_ips: str
    allowed_spf_domains: str
    allowed_dkim_domains: str
    require_dkim: bool
    require_smtp_auth: bool
    require_spf: bool
    smtp_credentials: str = Field(description="username:******** (the password is shown only in the response of "
                                              "the request that set it); empty when none.")
    created_at: Timestamp
    updated_at: Timestamp


class WebhookFields(RequestBody):
    active: bool | None = None
    address: str | None = Field(default=None, description="name@domain, or *@domain (catch-all) on a domain you own.")
    custom_headers: dict[str, str] | None = None
    name: str | None = None
    payload_template: str | None = Field(default=None, description="Jinja2 template of the request body; "
                                                                  "empty = the default JSON body.")
    rate_limit: int | None = Field(default=None, description="Deliveries per minute; 0 = unlimited.")
    secret: str | None = Field(default=None, description="Signing secret; generated (whsec_...) when absent.")
    smtp_security_policy_id: str | None = None
    target_url: str | None = None


class CreateWebhookRequest(WebhookFields):
    pass


class UpdateWebhookRequest(WebhookFields):
    clear_security_policy: bool | None = Field(default=None, description="true removes the SMTP security policy.")


class WebhookResponse(BaseModel):
    id: str
    name: str
    address: str
    target_url: str
    active: bool
    custom_headers: dict[str, str]
    payload_template: str | None
    rate_limit: int
    secret: str
    smtp_security_policy_id: str | None
    created_at: Timestamp
    updated_at: Timestamp


class DeliveryLogResponse(Model):
    id: str
    webhook_id: str
    attempted_at: Timestamp
    status: Literal["delivered", "failed", "retrying", "rejected"]
    http_status: int = Field(description="0 when no HTTP response was received (or the mail was refused at SMTP).")
    duration_ms: int
    error: str
    sender: str
    smtp_message_id: str
    simulated: bool


class SimulateWebhookRequest(RequestBody):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    subject: str | None = None
    text: str | None = None


class SimulateWebhookResponse(BaseModel):
    http_status: int
    duration_ms: int
    error: str
    simulated: bool


class RedeliveryResponse(BaseModel):
    job_id: str = Field(description="Also the webhook-id header of the coming delivery.")
    message_id: str
    status: Literal["queued"]
