"""Kickbox single verification, as an `EmailVerifier`.

`GET {base_url}/v2/verify?email=...&timeout=<ms>` with `Authorization: Bearer <API key>` (Kickbox
accepts the key as a Bearer token or an `apikey` query parameter; the header keeps it out of
URLs and access logs). Kickbox's `result` maps one to one onto our statuses and its `sendex`
quality score (0 to 1) is the confidence, capped per status so that an `unknown` or `risky`
answer never clears a default threshold on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

import httpx

from leadrelay.capture.normalize import normalize_email
from leadrelay.capture.verifiers import HttpVerifier, ProviderReply
from leadrelay.capture.verify import (
    UNKNOWN_CONFIDENCE,
    VerificationKind,
    VerificationResult,
    VerificationStatus,
)

DEFAULT_BASE_URL: Final = "https://api.kickbox.com"

# Kickbox result -> (our status, confidence without a sendex score, ceiling on the score)
RESULTS: Final[Mapping[str, tuple[VerificationStatus, float, float]]] = {
    "deliverable": (VerificationStatus.VALID, 0.9, 1.0),
    "risky": (VerificationStatus.RISKY, 0.4, 0.6),
    "unknown": (VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE, UNKNOWN_CONFIDENCE),
    "undeliverable": (VerificationStatus.INVALID, 0.02, 0.05),
}


class KickboxEmailVerifier(HttpVerifier):
    kind = VerificationKind.EMAIL
    provider = "kickbox"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        client: httpx.AsyncClient | None = None,
        smtp_timeout_ms: int = 6000,
        timeout: float | None = None,
    ) -> None:
        # Our HTTP timeout leaves Kickbox its whole SMTP budget plus a margin.
        http_timeout = timeout if timeout is not None else smtp_timeout_ms / 1000 + 4.0
        super().__init__(base_url=base_url, client=client, timeout=http_timeout)
        self._api_key = api_key
        self._smtp_timeout_ms = smtp_timeout_ms

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        email = normalize_email(value)
        if email.value is None or email.local is None or email.ascii_domain is None:
            return self._result(
                value, VerificationStatus.INVALID, 0.0, email.error or "invalid_syntax", now
            )
        reply = await self._get_json(
            "/v2/verify",
            params={
                "email": f"{email.local}@{email.ascii_domain}",
                "timeout": str(self._smtp_timeout_ms),
            },
            headers={"Authorization": f"Bearer {self._api_key}"},
        )
        if isinstance(reply, str):
            return self._unknown(email.value, reply, now)
        return self._read(email.value, reply, now)

    def _read(self, email: str, reply: ProviderReply, now: datetime) -> VerificationResult:
        body = reply.body
        if reply.status_code != 200 or body.get("success") is False:
            return self._unknown(email, "provider_error", now)
        result = body.get("result")
        if not isinstance(result, str) or result not in RESULTS:
            return self._unknown(email, "bad_response", now)
        status, default_confidence, ceiling = RESULTS[result]
        sendex = body.get("sendex")
        if isinstance(sendex, int | float) and not isinstance(sendex, bool):
            confidence = min(float(sendex), ceiling)
        else:
            confidence = default_confidence
        reason = body.get("reason")
        return self._result(
            email, status, confidence, reason if isinstance(reason, str) and reason else result, now
        )
