"""The e-mail channel interface: one outbound message in, one classified result out.

An adapter never raises for provider trouble (refusals, throttling, timeouts, lost connections):
it returns a `SendResult` the delivery job can act on. It raises only for programming errors, such
as a message whose header fields would let text escape into new header lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

SendStatus = Literal["sent", "transient", "permanent"]


@dataclass(frozen=True, slots=True)
class OutboundEmail:
    """One approved e-mail to one recipient, as the send step hands it to a channel.

    `text_body` may hold the `{{unsubscribe_url}}` placeholder; the channel replaces it with
    `unsubscribe_url`, this message's own signed link. `extra_headers` may not name a header the
    channel writes itself (From, To, Subject, Date, Message-ID, List-Unsubscribe, ...).
    """

    message_id: uuid.UUID
    from_address: str
    from_name: str
    to_address: str
    subject: str
    text_body: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None = None
    reply_to: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one message.

    - `sent`: the provider accepted it; `provider_message_id` correlates later events.
    - `transient`: try again later (4xx, throttling, timeouts, lost connections); when the
      provider asked to slow down, `retry_after` holds the seconds to wait at least.
    - `permanent`: do not retry this message (5xx such as `550 5.1.1`, refused credentials,
      an untrusted TLS certificate); `detail` says why.

    `raw` holds the exact bytes that were sent (or, for the dry run, would have been), so the
    caller can store them beside the approved revision.
    """

    status: SendStatus
    provider_message_id: str | None
    detail: str
    retry_after: float | None = None
    raw: bytes | None = field(default=None, repr=False)

    @property
    def is_sent(self) -> bool:
        return self.status == "sent"


class Channel(Protocol):
    async def send(self, message: OutboundEmail) -> SendResult:
        """Deliver one message; returns the classified outcome, raises only on programming
        errors."""
        ...
