"""Verifiers for inbound webhook signatures, and signing for our outbound webhooks.

Every ``verify_*`` function is pure: it takes the raw request pieces (bytes exactly as
received, header values as strings, the URL as the provider called it) and returns
``True`` only when the request is authentic and, where the scheme carries a timestamp,
fresh relative to the injected ``now``. Malformed attacker-controlled input yields
``False``, never an exception; a misconfigured secret or key, or a naive ``now``, raises
``ValueError`` because that is our bug, not a bad request.

Freshness alone does not stop a replay inside the tolerance window (or at all, for
providers without a signed timestamp), so callers also pass the provider's delivery id
through :func:`check_replay` after the signature has verified.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets as secrets_module
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

DEFAULT_TOLERANCE = timedelta(minutes=5)
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)
DEFAULT_REPLAY_CAPACITY = 100_000

_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_STANDARD_WEBHOOK_PREFIX = "whsec_"
_STANDARD_WEBHOOK_SECRET_BYTES = 32
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _constant_time_equals(expected: str, received: str) -> bool:
    # compare_digest refuses non-ASCII str; header values are attacker-controlled, so
    # compare bytes to turn odd input into a plain mismatch instead of a TypeError.
    return hmac.compare_digest(expected.encode(), received.encode())


def _require_aware(now: datetime) -> None:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC)")


def _is_fresh(timestamp: str, *, now: datetime, tolerance: timedelta) -> bool:
    """True when ``timestamp`` is whole Unix seconds within ``tolerance`` of ``now``, either way."""
    _require_aware(now)
    if not _UNIX_SECONDS.fullmatch(timestamp):
        return False
    sent_at = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return abs(now - sent_at) <= tolerance


# --- Twilio ---------------------------------------------------------------------------


def _twilio_url_variants(url: str) -> set[str] | None:
    """The URL without its port, and with it (the scheme's default port added if absent).

    Twilio's signing back end is inconsistent about ports, so twilio-python's
    ``RequestValidator.validate`` accepts a signature over either form; this mirrors it.
    Only the authority is rewritten; the rest of the URL stays byte-for-byte as given,
    because the signature covers it exactly. None when the URL cannot be parsed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.netloc:
        return None
    start = url.index("//") + 2
    end = start + len(parts.netloc)
    if url[start:end] != parts.netloc:
        # urlsplit silently drops tabs and newlines; refuse rather than guess offsets.
        return None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if port is not None else hostport

    def with_authority(hostport_value: str) -> str:
        return url[:start] + userinfo + at + hostport_value + url[end:]

    variants = {with_authority(host)}
    if port is not None:
        variants.add(url)
    elif parts.scheme.lower() in _DEFAULT_PORTS:
        variants.add(with_authority(f"{host}:{_DEFAULT_PORTS[parts.scheme.lower()]}"))
    return variants


def _twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    signed = [url]
    for name in sorted(params):
        value = params[name]
        values = [value] if isinstance(value, str) else sorted(value)
        signed.extend(name + item for item in values)
    digest = hmac.new(auth_token.encode(), "".join(signed).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    *,
    auth_token: str,
    url: str,
    params: Mapping[str, str | Sequence[str]] | None = None,
    body: bytes | None = None,
    signature: str,
) -> bool:
    """Check an ``X-Twilio-Signature`` header.

    ``url`` is the full URL Twilio requested, query string included. For a form-encoded
    request pass the POST fields as ``params`` (a repeated field as a sequence of its
    values). For a JSON request pass the raw ``body`` instead: Twilio then signs the URL
    alone and binds the body through a ``bodySHA256`` query parameter, which must be
    present and match. A URL carrying ``bodySHA256`` without a body is rejected.

    Raises ValueError when both ``params`` and ``body`` are given.
    """
    if body is not None and params:
        raise ValueError("pass params for a form request or body for a JSON request, not both")
    variants = _twilio_url_variants(url)
    if variants is None:
        return False
    body_hashes = parse_qs(urlsplit(url).query, keep_blank_values=True).get("bodySHA256")
    if body is not None or body_hashes is not None:
        if body is None or body_hashes is None or len(body_hashes) != 1:
            return False
        if not _constant_time_equals(hashlib.sha256(body).hexdigest(), body_hashes[0]):
            return False
        params = None
    signed_params = params or {}
    # Evaluate every variant so the time taken does not depend on which one matched.
    matches = [
        _constant_time_equals(_twilio_signature(auth_token, variant, signed_params), signature)
        for variant in sorted(variants)
    ]
    return any(matches)


# --- SendGrid -------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _load_p256_public_key(public_key: str) -> ec.EllipticCurvePublicKey:
    text = public_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as error:
        raise ValueError("SendGrid verification key is not a valid public key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("SendGrid verification key must be an ECDSA P-256 public key")
    return key


def verify_sendgrid(
    *,
    public_key: str,
    payload: bytes,
    signature: str,
    timestamp: str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Check a SendGrid Event Webhook delivery (ECDSA P-256 over SHA-256).

    ``signature`` and ``timestamp`` are the ``X-Twilio-Email-Event-Webhook-Signature``
    (base64 DER) and ``X-Twilio-Email-Event-Webhook-Timestamp`` headers; the signed bytes
    are the timestamp followed by the raw body. ``public_key`` is the verification key as
    the SendGrid console shows it (base64 DER SubjectPublicKeyInfo) or a PEM block.

    Raises ValueError when ``public_key`` is not a P-256 public key or ``now`` is naive.
    """
    key = _load_p256_public_key(public_key)
    if not _is_fresh(timestamp, now=now, tolerance=tolerance):
        return False
    try:
        der_signature = base64.b64decode(signature, validate=True)
        key.verify(der_signature, timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# --- Mailgun --------------------------------------------------------------------------


def verify_mailgun(
    *,
    signing_key: str,
    timestamp: str,
    token: str,
    signature: str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Check the ``signature`` object of a Mailgun webhook: hex HMAC-SHA256 of timestamp + token.

    ``signing_key`` is the HTTP webhook signing key, not the API key. Mailgun's ``token``
    is unique per delivery and is the id to pass to :func:`check_replay`.

    Raises ValueError when ``now`` is naive.
    """
    if not token or not _is_fresh(timestamp, now=now, tolerance=tolerance):
        return False
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    return _constant_time_equals(expected, signature)


# --- Meta -----------------------------------------------------------------------------


def verify_meta(*, app_secret: str, payload: bytes, signature_header: str) -> bool:
    """Check an ``X-Hub-Signature-256`` header (``sha256=`` + hex HMAC-SHA256 of the raw body).

    Meta signs no timestamp, so this proves authenticity only; replays must be caught
    by :func:`check_replay`.
    """
    scheme, _, received = signature_header.partition("=")
    if scheme != "sha256" or not received:
        return False
    expected = hmac.new(app_secret.encode(), payload, hashlib.sha256).hexdigest()
    return _constant_time_equals(expected, received)


# --- Standard Webhooks ----------------------------------------------------------------


def _decode_standard_webhook_secret(secret: str) -> bytes:
    encoded = secret.removeprefix(_STANDARD_WEBHOOK_PREFIX)
    try:
        # Tolerate unpadded base64, as the reference library does; extra "=" is ignored.
        key = base64.b64decode(encoded + "==")
    except binascii.Error as error:
        raise ValueError("webhook secret is not whsec_ followed by base64") from error
    if not key:
        raise ValueError("webhook secret must not be empty")
    return key


def _standard_webhook_digest(key: bytes, msg_id: str, timestamp: str, payload: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_standard_webhook(*, secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
    """Return the ``webhook-signature`` entry ``v1,<base64 HMAC-SHA256>`` for one delivery.

    ``timestamp`` is Unix seconds and must also be sent as ``webhook-timestamp``.
    Raises ValueError when ``secret`` is not a valid ``whsec_`` secret.
    """
    key = _decode_standard_webhook_secret(secret)
    digest = _standard_webhook_digest(key, msg_id, str(timestamp), payload)
    return "v1," + base64.b64encode(digest).decode()


def generate_standard_webhook_secret() -> str:
    """Return a fresh ``whsec_`` secret holding 32 random bytes, base64 encoded."""
    raw = secrets_module.token_bytes(_STANDARD_WEBHOOK_SECRET_BYTES)
    return _STANDARD_WEBHOOK_PREFIX + base64.b64encode(raw).decode()


def verify_standard_webhook(
    *,
    secrets: Sequence[str],
    msg_id: str,
    timestamp: str,
    payload: bytes,
    signature_header: str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Check a Standard Webhooks delivery (``webhook-id``/``-timestamp``/``-signature`` headers).

    Accepts when any ``v1`` entry of the space-separated ``signature_header`` matches any
    of ``secrets``; listing the old and the new secret during a rotation keeps both valid.
    Entries of other versions (such as asymmetric ``v1a``) and malformed entries are
    skipped.

    Raises ValueError when ``secrets`` is empty or holds an invalid secret, or ``now`` is
    naive; TypeError when ``secrets`` is a single string rather than a sequence of them.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise ValueError("at least one webhook secret is required")
    keys = [_decode_standard_webhook_secret(secret) for secret in secrets]
    if not msg_id or not _is_fresh(timestamp, now=now, tolerance=tolerance):
        return False
    expected = [_standard_webhook_digest(key, msg_id, timestamp, payload) for key in keys]
    matched = False
    for entry in signature_header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            received = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        for digest in expected:
            matched |= hmac.compare_digest(digest, received)
    return matched


# --- Replay protection ----------------------------------------------------------------


class ReplayStore(Protocol):
    """Remembers delivery keys so that each one is accepted once.

    Implementations must be safe to call concurrently and must make ``remember`` atomic:
    of two concurrent calls with the same new key, exactly one returns True.
    """

    def remember(self, key: str, *, now: datetime) -> bool:
        """Record ``key`` as seen at ``now``; True if it was not already remembered."""
        ...


class InMemoryReplayStore:
    """A process-local :class:`ReplayStore` for tests and single-process deployments.

    A key is refused for ``window`` after it was first remembered, then forgotten. At
    most ``capacity`` keys are held; past that the oldest are evicted first, which
    re-opens them to replay, so size ``capacity`` above the expected deliveries per
    window. Entries expire relative to the ``now`` passed in, never the wall clock.
    """

    def __init__(
        self,
        *,
        window: timedelta = DEFAULT_REPLAY_WINDOW,
        capacity: int = DEFAULT_REPLAY_CAPACITY,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._window = window
        self._capacity = capacity
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def remember(self, key: str, *, now: datetime) -> bool:
        """Record ``key`` as seen at ``now``; True if it was not seen within the window.

        Raises ValueError when ``now`` is naive.
        """
        _require_aware(now)
        expired_before = now - self._window
        with self._lock:
            # Keys are kept in first-seen order, so expired ones sit at the front.
            while self._seen:
                oldest_key, oldest_seen_at = next(iter(self._seen.items()))
                if oldest_seen_at > expired_before:
                    break
                del self._seen[oldest_key]
            seen_at = self._seen.get(key)
            if seen_at is not None and seen_at > expired_before:
                return False
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True


def check_replay(store: ReplayStore, *, provider: str, delivery_id: str, now: datetime) -> bool:
    """True the first time ``delivery_id`` arrives from ``provider``; False on a replay.

    Call it only after the signature verified, so forged requests cannot fill the store.
    Ids are namespaced per provider. An empty ``delivery_id`` is refused (False), since
    its freshness cannot be established. Raises ValueError when ``provider`` is not a
    lowercase slug such as ``"twilio"``.
    """
    if not _PROVIDER_NAME.fullmatch(provider):
        raise ValueError(f"provider must be a lowercase slug, got {provider!r}")
    if not delivery_id:
        return False
    return store.remember(f"{provider}:{delivery_id}", now=now)
