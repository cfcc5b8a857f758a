"""Twilio Lookup v2 with Line Type Intelligence, as a `PhoneVerifier`.

`GET {base_url}/v2/PhoneNumbers/{E.164}?Fields=line_type_intelligence`, HTTP Basic auth with
the account SID (or an API key SID) and its auth token (or secret). The answer's `valid` says
whether the number is in an assignable range (`validation_errors` say why not) and
`line_type_intelligence.type` what kind of line it is (mobile, landline, fixedVoip,
nonFixedVoip, tollFree, premium, sharedCost, uan, voicemail, pager, personal, unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final
from urllib.parse import quote

import httpx

from leadrelay.capture.normalize import normalize_phone
from leadrelay.capture.verifiers import HttpVerifier, ProviderReply
from leadrelay.capture.verify import VerificationKind, VerificationResult, VerificationStatus

DEFAULT_BASE_URL: Final = "https://lookups.twilio.com"

_VALID = VerificationStatus.VALID
_RISKY = VerificationStatus.RISKY
# Twilio line type -> (status, confidence, our reason). A carrier-backed answer is worth more
# than libphonenumber's ranges; non-fixed VoIP numbers are cheap to get and throw away.
LINE_TYPES: Final[Mapping[str, tuple[VerificationStatus, float, str]]] = {
    "mobile": (_VALID, 0.95, "mobile"),
    "landline": (_VALID, 0.85, "fixed_line"),
    "fixedVoip": (_VALID, 0.8, "fixed_voip"),
    "personal": (_VALID, 0.8, "personal_number"),
    "tollFree": (_VALID, 0.75, "toll_free"),
    "sharedCost": (_VALID, 0.7, "shared_cost"),
    "uan": (_VALID, 0.7, "uan"),
    "unknown": (_VALID, 0.6, "unknown_line_type"),
    "nonFixedVoip": (_RISKY, 0.45, "non_fixed_voip"),
    "voicemail": (_RISKY, 0.4, "voicemail"),
    "pager": (_RISKY, 0.4, "pager"),
    "premium": (_RISKY, 0.3, "premium_rate"),
}
_NO_LINE_TYPE: Final = (_VALID, 0.7, "valid_no_line_type")


class TwilioLookupVerifier(HttpVerifier):
    kind = VerificationKind.PHONE
    provider = "twilio_lookup"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        default_region: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(base_url=base_url, client=client, timeout=timeout)
        self._auth = (account_sid, auth_token)
        self._default_region = default_region

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        phone = normalize_phone(value, default_region=self._default_region)
        if phone.e164 is None:
            return self._result(
                value, VerificationStatus.INVALID, 0.0, phone.error or "not_a_number", now
            )
        reply = await self._get_json(
            f"/v2/PhoneNumbers/{quote(phone.e164, safe='+')}",
            params={"Fields": "line_type_intelligence"},
            auth=self._auth,
        )
        if isinstance(reply, str):
            return self._unknown(phone.e164, reply, now)
        return self._read(phone.e164, reply, now)

    def _read(self, e164: str, reply: ProviderReply, now: datetime) -> VerificationResult:
        if reply.status_code == 404:
            return self._unknown(e164, "not_found", now)
        if reply.status_code != 200:
            return self._unknown(e164, f"http_{reply.status_code}", now)
        body = reply.body
        valid = body.get("valid")
        if valid is False:
            errors = body.get("validation_errors")
            first = errors[0] if isinstance(errors, list) and errors else None
            reason = first.lower() if isinstance(first, str) else "invalid_number"
            return self._result(e164, VerificationStatus.INVALID, 0.02, reason, now)
        if valid is not True:
            return self._unknown(e164, "bad_response", now)
        line = body.get("line_type_intelligence")
        line_type = line.get("type") if isinstance(line, dict) else None
        if not isinstance(line, dict) or line.get("error_code") is not None:
            line_type = None
        status, confidence, reason = (
            LINE_TYPES.get(line_type, LINE_TYPES["unknown"])
            if isinstance(line_type, str)
            else _NO_LINE_TYPE
        )
        return self._result(e164, status, confidence, reason, now)
