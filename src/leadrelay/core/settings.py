"""Typed settings from the environment (and `.env`).

Every variable is documented in `.env.example`. A wrong or missing value stops start-up with one
line naming the variable and what is expected (see `load_settings`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class SettingsError(SystemExit):
    """Start-up refused: one line naming the variable and what is expected."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADRELAY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    env: Literal["development", "test", "production"] = "development"
    # Owner (migration) connection. Empty: an embedded PostgreSQL with its data in `data_dir/pg`.
    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    # The application's own role, without BYPASSRLS, owning nothing. Empty: derived from
    # DATABASE_URL with the user swapped for `app_db_role`.
    database_app_url: str = Field(default="", validation_alias="DATABASE_APP_URL")
    app_db_role: str = Field(default="leadrelay_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_db_password: SecretStr = SecretStr("")
    data_dir: Path = PROJECT_ROOT / "var"
    embedded_pg_port: int = Field(default=54329, ge=1024, le=65535)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    # Fernet key (urlsafe base64, 32 bytes) for secrets at rest. Empty in development: a key is
    # generated once into `data_dir/secret.key`. Required in production.
    secret_key: SecretStr = SecretStr("")
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    # Safe defaults: nothing leaves, everything needs a human, caps stay low.
    dry_run: bool = True
    approval_required: bool = True
    daily_cap_email: int = Field(default=200, ge=0)
    daily_cap_sms: int = Field(default=100, ge=0)
    daily_cap_voice: int = Field(default=50, ge=0)

    worker_concurrency: int = Field(default=4, ge=1, le=64)
    job_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    session_ttl_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    secret_rotation_overlap_hours: int = Field(default=24, ge=0)
    # Outbound webhooks to loopback/private addresses are refused (SSRF) unless allowed here.
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # DNS servers for e-mail MX checks, comma-separated IPs. Empty: no lookups, deliverability
    # is "unknown" (syntax and provider lists still apply). /etc/resolv.conf is never read.
    dns_resolvers: str = Field(default="", pattern=r"^[0-9a-fA-F:., ]*$")
    # The port those servers answer on, and how long one question may take: sending-domain
    # checks (SPF, DKIM, DMARC) give "unknown" after it, so an offline machine answers fast.
    dns_port: int = Field(default=53, ge=1, le=65535)
    dns_timeout_seconds: float = Field(default=1.5, gt=0, le=10)
    # Paid verifiers, used instead of the offline ones when configured (each call costs money).
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_lookup_base_url: str = "https://lookups.twilio.com"
    kickbox_api_key: SecretStr = SecretStr("")
    kickbox_base_url: str = "https://api.kickbox.com"
    # Meta's Graph API (Lead Ads lead retrieval); a source may name its own base URL.
    meta_graph_base_url: str = Field(
        default="https://graph.facebook.com/v21.0", pattern=r"^https?://[^\s?#]+$"
    )

    # Drafting: any OpenAI-compatible endpoint, off until a base URL and model are set; the
    # sandboxed templates are the default and the fallback.
    llm_base_url: str = Field(default="", pattern=r"^(https?://[^\s?#]+)?$")
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = Field(default="", max_length=200)
    llm_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Approvals: pending items expire after this many days.
    approval_expiry_days: int = Field(default=7, ge=1, le=365)

    # Outreach by e-mail over SMTP (used only when dry-run is off for the process and the
    # tenant). Empty host: e-mail can only be dry-run.
    smtp_host: str = Field(default="", max_length=253)
    smtp_port: int = Field(default=0, ge=0, le=65535)  # 0: the usual port of `smtp_security`
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # The From address when a tenant's sender identity has no e-mail of its own.
    mail_from: str = Field(default="", max_length=320)
    # Delivery attempts before a message that keeps failing transiently is marked failed.
    send_max_attempts: int = Field(default=6, ge=1, le=50)
    # DKIM signing of e-mail sent over SMTP (and of the dry-run's recorded bytes): the domain,
    # the selector published at <selector>._domainkey.<domain>, an RSA key in a PEM file.
    dkim_domain: str = Field(default="", max_length=253)
    dkim_selector: str = Field(default="", max_length=63)
    dkim_private_key_path: str = ""
    # Which provider carries e-mail when not in dry-run; each needs its own settings below.
    email_provider: Literal["smtp", "sendgrid", "mailgun"] = "smtp"
    sendgrid_api_key: SecretStr = SecretStr("")
    sendgrid_base_url: str = Field(
        default="https://api.sendgrid.com", pattern=r"^https?://[^\s?#]+$"
    )
    mailgun_api_key: SecretStr = SecretStr("")
    mailgun_domain: str = Field(default="", max_length=253)
    mailgun_base_url: str = Field(default="https://api.mailgun.net", pattern=r"^https?://[^\s?#]+$")
    # Twilio Messaging (SMS, WhatsApp) and Voice share the account above (TWILIO_ACCOUNT_SID,
    # TWILIO_AUTH_TOKEN). Senders: a messaging service or a number for SMS, a WhatsApp-enabled
    # number, a voice number.
    twilio_base_url: str = Field(default="https://api.twilio.com", pattern=r"^https?://[^\s?#]+$")
    twilio_messaging_service_sid: str = Field(default="", max_length=64)
    twilio_from_number: str = Field(default="", pattern=r"^(\+[1-9]\d{6,14})?$")
    twilio_whatsapp_from: str = Field(default="", pattern=r"^(\+[1-9]\d{6,14})?$")
    twilio_voice_from: str = Field(default="", pattern=r"^(\+[1-9]\d{6,14})?$")
    # Replies and opt-outs (telemetry.inbound). Mailgun route forwards are signed with
    # MAILGUN_WEBHOOK_SIGNING_KEY (below). SendGrid Inbound Parse signs nothing: its URL
    # carries these HTTP Basic credentials (https://user:pass@host/...); empty, the endpoint
    # refuses everything. HELP/INFO is answered with a tenant's `outreach.help_text`, else this.
    sendgrid_inbound_username: str = Field(default="", max_length=200)
    sendgrid_inbound_password: SecretStr = SecretStr("")
    inbound_help_text: str = Field(
        default="Reply STOP to unsubscribe, START to resubscribe.", min_length=1, max_length=1600
    )
    # Delivery webhooks (telemetry): SendGrid's Event Webhook verification key (the ECDSA
    # public key its console shows) and Mailgun's HTTP webhook signing key. Twilio's status
    # callbacks are checked with TWILIO_AUTH_TOKEN. A webhook whose key is unset is refused.
    sendgrid_webhook_public_key: str = Field(default="", max_length=2000)
    mailgun_webhook_signing_key: SecretStr = SecretStr("")

    @field_validator("database_url", "database_app_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(
            ("postgresql://", "postgres://", "postgresql+psycopg://")
        ):
            raise ValueError("expected a postgresql:// URL")
        return value

    @property
    def uses_embedded_postgres(self) -> bool:
        return not self.database_url


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = (str(first["loc"][0]) if first["loc"] else "?").lower()
    names = {
        "database_url": "DATABASE_URL",
        "database_app_url": "DATABASE_APP_URL",
    }
    variable = names.get(field, f"LEADRELAY_{field.upper()}")
    secret = any(word in field for word in ("secret", "password", "key", "url"))
    shown = "" if secret else f" (got {first.get('input')!r})"
    return f"invalid setting {variable}: {first['msg']}{shown}"


@functools.cache
def get_settings() -> Settings:
    """Settings for this process; raises `SettingsError` (exit with one line) when invalid."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    if settings.env == "production" and not settings.secret_key.get_secret_value():
        raise SettingsError(
            "missing setting LEADRELAY_SECRET_KEY: a Fernet key is required in production"
        )
    return settings
