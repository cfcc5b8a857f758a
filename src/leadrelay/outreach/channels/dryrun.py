"""The default channel: renders every message exactly as a real channel would (headers, DKIM) and
sends nothing. The result carries the bytes that would have gone out, for the caller to record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from leadrelay.core.clock import utcnow
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.email_message import DkimKey, render_email

DRY_RUN_DETAIL = "dry run: not sent"


class DryRunChannel:
    """No I/O. `provider_message_id` is `dryrun-<message uuid>`."""

    def __init__(
        self,
        *,
        dkim_key: DkimKey | None = None,
        message_id_domain: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._dkim_key = dkim_key
        self._message_id_domain = message_id_domain
        self._clock = clock

    async def send(self, message: OutboundEmail) -> SendResult:
        rendered = render_email(
            message,
            now=self._clock(),
            dkim_key=self._dkim_key,
            message_id_domain=self._message_id_domain,
        )
        return SendResult(
            status="sent",
            provider_message_id=f"dryrun-{message.message_id}",
            detail=DRY_RUN_DETAIL,
            raw=rendered.raw,
        )
