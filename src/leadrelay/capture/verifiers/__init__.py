"""Paid verification providers, one module each, behind the `EmailVerifier` / `PhoneVerifier`
protocols of `leadrelay.capture.verify`: `twilio_lookup.TwilioLookupVerifier` (phone) and
`kickbox.KickboxEmailVerifier` (e-mail).

One failure policy for all of them: a timeout, a transport error, a 429 or a 5xx is an
`unknown` result (never an exception, never cached by `verify_cached`), because the value may
be fine and a later run can ask again; 401 and 403 raise `VerifierMisconfigured`, because
retrying cannot fix credentials. A value our own normalizer rejects is answered `invalid`
without a (paid) request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from leadrelay.capture.verify import (
    UNKNOWN_CONFIDENCE,
    VerificationKind,
    VerificationResult,
    VerificationStatus,
    VerifierMisconfigured,
)


@dataclass(frozen=True, slots=True)
class ProviderReply:
    status_code: int
    body: Mapping[str, object]


class HttpVerifier:
    """An httpx client (injected, or made on first use and closed by `aclose`), a base URL
    and the shared failure policy."""

    kind: VerificationKind
    provider: str

    def __init__(self, *, base_url: str, client: httpx.AsyncClient | None, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def _get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> ProviderReply | str:
        """The provider's JSON object, or the reason it could not be had."""
        try:
            response = await self._http().get(
                self._base_url + path,
                params=params,
                headers=headers,
                auth=auth,
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            return "provider_timeout"
        except httpx.HTTPError:
            return "provider_unreachable"
        if response.status_code in (401, 403):
            raise VerifierMisconfigured(
                f"{self.provider} refused our credentials (HTTP {response.status_code}): "
                "check the API key or account settings."
            )
        if response.status_code == 429:
            return "rate_limited"
        if response.status_code >= 500:
            return "provider_error"
        try:
            body = response.json()
        except ValueError:
            return "bad_response"
        if not isinstance(body, dict):
            return "bad_response"
        return ProviderReply(response.status_code, body)

    def _result(
        self,
        value: str,
        status: VerificationStatus,
        confidence: float,
        reason: str,
        now: datetime,
    ) -> VerificationResult:
        return VerificationResult(
            kind=self.kind,
            value=value,
            status=status,
            confidence=min(max(confidence, 0.0), 1.0),
            reason=reason,
            provider=self.provider,
            checked_at=now,
        )

    def _unknown(self, value: str, reason: str, now: datetime) -> VerificationResult:
        return self._result(value, VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE, reason, now)
