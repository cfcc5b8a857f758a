"""Hashing, tokens and encryption at rest. No home-made crypto: argon2-cffi, hashlib, Fernet."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from leadrelay.core.settings import Settings

_password_hasher = PasswordHasher()
API_KEY_PREFIX = "lr_"
# A fixed hash to verify against when the account does not exist, so that a login attempt
# for an unknown e-mail costs the same time as one for a known e-mail.
_DUMMY_HASH = _password_hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash or _DUMMY_HASH, password) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token (API keys, session cookies): fast and sufficient,
    since such tokens cannot be guessed the way passwords can."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(token: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), expected_hash)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    token: str  # shown once
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    prefix = API_KEY_PREFIX + secrets.token_hex(5)
    token = f"{prefix}.{secrets.token_urlsafe(32)}"
    return NewApiKey(token=token, prefix=prefix, key_hash=hash_token(token))


def api_key_prefix(token: str) -> str | None:
    prefix, dot, _ = token.partition(".")
    if not dot or not prefix.startswith(API_KEY_PREFIX) or len(prefix) > 16:
        return None
    return prefix


def secret_keys(settings: Settings) -> str:
    """LEADRELAY_SECRET_KEY, or in development the key generated once into var/."""
    return settings.secret_key.get_secret_value() or load_or_create_key(
        settings.data_dir / "secret.key"
    )


def app_secret_keys(state: Any) -> str:
    """The secret keys of a running app (its `app.state`), read once per process."""
    if not hasattr(state, "secret_keys"):
        state.secret_keys = secret_keys(state.settings)
    keys: str = state.secret_keys
    return keys


def keyed_hash(keys: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value` under a key derived from the secret keys and `purpose`: a
    stable id for personal data (e-mail, phone) that reveals nothing without the key."""
    return keyed_hasher(keys, purpose)(value)


def keyed_hasher(keys: str, purpose: str) -> Callable[[str], str]:
    """`keyed_hash` with the key derived once, for hashing many values."""
    key = hashlib.sha256(f"{purpose}\n{keys.split(',')[0]}".encode()).digest()

    def digest(value: str) -> str:
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    return digest


def load_or_create_key(path: Path) -> str:
    """The development Fernet key, generated once into var/ (never committed)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    path.write_text(key)
    path.chmod(0o600)
    return key


class SecretBox:
    """Encrypts secrets at rest. Several keys (comma-separated) allow key rotation: the first
    encrypts, all decrypt."""

    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as error:
            raise ValueError("secret cannot be decrypted with the configured keys") from error
