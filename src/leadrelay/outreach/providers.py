"""Which provider carries each channel, built from the settings in one place.

A provider is only named when it is fully configured; otherwise the channel has no provider
and a live message fails visibly ("no … provider configured") instead of vanishing.
"""

from __future__ import annotations

import functools
from pathlib import Path

from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach.channels.base import Channel as EmailChannel
from leadrelay.outreach.channels.email_message import DkimKey
from leadrelay.outreach.channels.mailgun import MailgunChannel, MailgunSettings
from leadrelay.outreach.channels.sendgrid import SendGridChannel, SendGridSettings
from leadrelay.outreach.channels.smtp import SmtpChannel, SmtpSettings
from leadrelay.outreach.channels.twilio import TwilioSettings

DRY_RUN = "dryrun"
NONE = "none"


def _email_ready(settings: Settings) -> bool:
    match settings.email_provider:
        case "smtp":
            return bool(settings.smtp_host)
        case "sendgrid":
            return bool(settings.sendgrid_api_key.get_secret_value())
        case "mailgun":
            return bool(settings.mailgun_api_key.get_secret_value() and settings.mailgun_domain)


def _twilio_ready(settings: Settings, channel: Channel) -> bool:
    if not (settings.twilio_account_sid and settings.twilio_auth_token.get_secret_value()):
        return False
    if channel is Channel.SMS:
        return bool(settings.twilio_messaging_service_sid or settings.twilio_from_number)
    if channel is Channel.WHATSAPP:
        return bool(settings.twilio_whatsapp_from or settings.twilio_messaging_service_sid)
    return bool(settings.twilio_voice_from)


def provider_for(channel: Channel, settings: Settings, *, dry_run: bool) -> str:
    """The provider a message on `channel` is decided for: `dryrun`, a configured provider's
    name, or `none`."""
    if dry_run:
        return DRY_RUN
    if channel is Channel.EMAIL:
        return settings.email_provider if _email_ready(settings) else NONE
    return "twilio" if _twilio_ready(settings, channel) else NONE


@functools.cache
def _dkim_key(domain: str, selector: str, path: str) -> DkimKey:
    return DkimKey(domain=domain, selector=selector, private_key=Path(path).read_bytes())


def dkim_key(settings: Settings) -> DkimKey | None:
    """The DKIM key when all three settings are given (read and checked once)."""
    if not (settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key_path):
        return None
    return _dkim_key(settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key_path)


def smtp_channel(settings: Settings) -> SmtpChannel | None:
    if settings.email_provider != "smtp" or not _email_ready(settings):
        return None
    return SmtpChannel(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port or None,
            security=settings.smtp_security,
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            timeout=settings.smtp_timeout_seconds,
            dkim_key=dkim_key(settings),
        )
    )


def email_channel(provider: str, settings: Settings) -> EmailChannel | None:
    if provider == "smtp":
        return smtp_channel(settings)
    if provider == "sendgrid" and _email_ready(settings):
        return SendGridChannel(
            SendGridSettings(api_key=settings.sendgrid_api_key, base_url=settings.sendgrid_base_url)
        )
    if provider == "mailgun" and _email_ready(settings):
        return MailgunChannel(
            MailgunSettings(
                api_key=settings.mailgun_api_key,
                domain=settings.mailgun_domain,
                base_url=settings.mailgun_base_url,
            )
        )
    return None


def twilio_settings(settings: Settings) -> TwilioSettings | None:
    if not (settings.twilio_account_sid and settings.twilio_auth_token.get_secret_value()):
        return None
    public = settings.public_url.rstrip("/")
    return TwilioSettings(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        base_url=settings.twilio_base_url,
        messaging_service_sid=settings.twilio_messaging_service_sid or None,
        from_number=settings.twilio_from_number or None,
        whatsapp_from=settings.twilio_whatsapp_from or None,
        voice_from=settings.twilio_voice_from or None,
        voice_url_base=f"{public}/voice",
        # Delivery reports of texts (telemetry.api); a call gets its own, signed per call.
        status_callback_url=f"{public}/v1/telemetry/twilio/status",
    )
