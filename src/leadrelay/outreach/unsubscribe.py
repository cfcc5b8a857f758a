"""Signed per-message unsubscribe tokens: the link in each e-mail names its tenant and message.

A token is URL-safe base64 (no padding) of `version | tenant id | message id | tag`, the tag the
first 16 bytes of HMAC-SHA256 over a context label and the rest. Tokens never expire: an
unsubscribe link must keep working for as long as the e-mail sits in someone's mailbox. Rotating
the secret invalidates every link already sent, so the secret is kept, not rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

from leadrelay.core.errors import LeadRelayError

_VERSION = b"\x01"
_CONTEXT = b"leadrelay/unsubscribe/v1\x00"
_TAG_BYTES = 16  # 128 bits: forging one link takes 2**128 guesses
_RAW_BYTES = len(_VERSION) + 16 + 16 + _TAG_BYTES
TOKEN_LENGTH = (_RAW_BYTES * 4 + 2) // 3  # 66 characters
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
MIN_SECRET_BYTES = 16


class InvalidToken(LeadRelayError):
    """This unsubscribe link is not valid."""

    status = 400
    code = "invalid-unsubscribe-token"
    title = "Invalid unsubscribe link"


def make_token(secret: bytes, tenant_id: uuid.UUID, message_id: uuid.UUID) -> str:
    payload = _VERSION + tenant_id.bytes + message_id.bytes
    raw = payload + _tag(secret, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(secret: bytes, token: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The (tenant id, message id) a token names; raises `InvalidToken` for anything not made
    by `make_token` with this secret (tampered, truncated, padded, re-encoded, garbage)."""
    _check_secret(secret)
    if not _TOKEN.fullmatch(token):
        raise InvalidToken
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    # Base64 leaves spare bits in the last character: accept only the one canonical spelling,
    # so that each message has exactly one valid token.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret, payload)):
        raise InvalidToken
    if payload[:1] != _VERSION:
        raise InvalidToken
    return uuid.UUID(bytes=payload[1:17]), uuid.UUID(bytes=payload[17:33])


def _tag(secret: bytes, payload: bytes) -> bytes:
    _check_secret(secret)
    return hmac.new(secret, _CONTEXT + payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the unsubscribe secret must have at least {MIN_SECRET_BYTES} bytes")
