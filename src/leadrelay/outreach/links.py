"""The signed links a message carries: its unsubscribe link and, for a call, where Twilio fetches
the TwiML. Both name the tenant and the message (`unsubscribe.make_token`)."""

from __future__ import annotations

import hashlib
import uuid

from leadrelay.core.settings import Settings
from leadrelay.outreach.models import Message
from leadrelay.outreach.unsubscribe import make_token


def _token_secret(keys: str, purpose: str) -> bytes:
    """A link-signing secret per purpose, from the first key (rotating it breaks old links)."""
    return hashlib.sha256(f"{purpose}\n{keys.split(',')[0]}".encode()).digest()


def unsubscribe_secret(keys: str) -> bytes:
    return _token_secret(keys, "unsubscribe")


def unsubscribe_link(
    settings: Settings, keys: str, tenant_id: uuid.UUID, message_id: uuid.UUID
) -> str:
    token = make_token(unsubscribe_secret(keys), tenant_id, message_id)
    return f"{settings.public_url.rstrip('/')}/unsubscribe/{token}"


def unsubscribe_url(settings: Settings, keys: str, message: Message) -> str:
    return unsubscribe_link(settings, keys, message.tenant_id, message.id)


def voice_secret(keys: str) -> bytes:
    return _token_secret(keys, "voice")


def voice_link(settings: Settings, keys: str, tenant_id: uuid.UUID, message_id: uuid.UUID) -> str:
    """Where Twilio fetches the call's TwiML (and posts what the callee said)."""
    token = make_token(voice_secret(keys), tenant_id, message_id)
    return f"{settings.public_url.rstrip('/')}/voice/{token}"
