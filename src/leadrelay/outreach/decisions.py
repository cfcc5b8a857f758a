"""The policy guard's decisions for a chunk of messages: the facts read in a constant number of
statements, the counters read under the per-tenant lock, each message decided in order.

`policy.decide` is pure; this module is what feeds it, for every path that sends (new messages
from `queueing.queue_drafts`, stored ones decided again by `queueing.release_due` or when their
key is asked for again) and, for the approval alone, at hand-over (`delivery`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals import service as approvals
from leadrelay.capture.models import LegalBasis
from leadrelay.compliance import audit
from leadrelay.core.errors import LeadRelayError
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach import counting, suppression
from leadrelay.outreach import policy as guard
from leadrelay.outreach.limits import OutreachPolicy, guard_policy
from leadrelay.outreach.models import MessageStatus


@dataclass(frozen=True, slots=True)
class LeadFacts:
    id: uuid.UUID
    email: str | None
    phone_e164: str | None
    country: str | None
    zone: str | None  # attributes.timezone, when it is a non-empty string
    legal_basis: str | None  # the source's


@dataclass(slots=True)
class Candidate:
    """A message the guard decides: one about to be made, or a stored one (blocked or deferred)
    decided again. `record` writes the decision on it; the caller stores it."""

    id: uuid.UUID
    lead: LeadFacts
    draft_id: uuid.UUID | None
    channel: str
    dry_run: bool
    recipient: str
    recipient_domain: str | None
    recipient_country: str | None
    subject: str | None
    body: str
    status: MessageStatus = MessageStatus.QUEUED
    counted_at: datetime | None = None
    decision: guard.Decision | None = None
    not_before: datetime | None = None  # held until then (`Check.SCHEDULE`)

    @property
    def lead_id(self) -> uuid.UUID:
        return self.lead.id

    @property
    def blocked_by(self) -> str | None:
        return self.decision.blocked_by if self.decision else None

    @property
    def decided(self) -> guard.Decision:
        if self.decision is None:
            raise RuntimeError(f"message {self.id} has not been decided")
        return self.decision

    def record(self, decision: guard.Decision, now: datetime) -> None:
        self.decision = decision
        if decision.allowed:
            self.status, self.counted_at = MessageStatus.QUEUED, now
        elif decision.retry_at is not None:
            self.status = MessageStatus.DEFERRED
        else:
            self.status = MessageStatus.BLOCKED


class Texts(Protocol):
    """What a message is about to send, as the send guard checks it."""

    @property
    def draft_id(self) -> uuid.UUID | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def body(self) -> str: ...


async def approval_refusals(
    session: AsyncSession, tenant_id: uuid.UUID, messages: Sequence[Texts], *, now: datetime
) -> list[str | None]:
    """Why the send guard refuses each message's exact text (None: it lets it through)."""
    outgoing = [approvals.Outgoing(m.draft_id, m.subject, m.body) for m in messages if m.draft_id]
    answers = iter(await approvals.handoff_many(session, tenant_id, outgoing, now=now))
    refusals: list[str | None] = []
    for message in messages:
        if message.draft_id is None:
            refusals.append("no approved draft")
            continue
        answer = next(answers)
        refusals.append(answer.detail if isinstance(answer, LeadRelayError) else None)
    return refusals


def address_of(candidate: Candidate) -> tuple[suppression.AddressKind, str]:
    """What suppressions are looked up by: the e-mail address, else the number."""
    if candidate.channel == Channel.EMAIL.value and candidate.recipient:
        return "email", candidate.recipient
    return "phone", candidate.recipient


async def decide(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    candidates: Sequence[Candidate],
    *,
    keys: str,
    view: OutreachPolicy,
    now: datetime,
) -> None:
    """Run the guard on each candidate, in order, and record its decision on it. The counting
    lock of each of their channels is held from here to the caller's commit: the caller writes
    the candidates (`counted_at` of those let through) before it commits."""
    if not candidates:
        return
    refusals = await approval_refusals(session, tenant_id, candidates, now=now)
    consents = await suppression.consent_states(
        session, ((c.lead_id, c.channel) for c in candidates)
    )
    addresses = [address_of(c) for c in candidates]
    suppressed = await suppression.suppression_reasons_for(session, keys, addresses)
    listed = await suppression.dnc_lists_for(
        session, keys, (address for kind, address in addresses if kind == "phone")
    )
    # Counted last, under the lock: everything above is about each lead alone and needs no
    # serializing; holding the lock only for counting and writing keeps senders flowing.
    # The audit chain's head first: the decisions are audited under the counting lock, and a
    # campaign run audits its drafts before it gets here; a sender that took the counting lock
    # and then waited for the head could wait for a run that waits for it (a deadlock).
    await audit.lock_chain(session, tenant_id)
    await counting.lock_counting(session, tenant_id, {c.channel for c in candidates})
    tally = await counting.read_tally(session, candidates, zone=view.timezone, now=now)
    policy = guard_policy(view)
    for candidate, refusal, address in zip(candidates, refusals, addresses, strict=True):
        consent = consents.get((candidate.lead_id, candidate.channel))
        reason = suppressed.get(address)
        facts = guard.Facts(
            # A lead always has a source; were it gone, the strictest basis applies.
            legal_basis=LegalBasis(candidate.lead.legal_basis or LegalBasis.CONSENT),
            consent=guard.Consent(guard.ConsentState(consent[0]), consent[1])
            if consent
            else guard.Consent(guard.ConsentState.UNKNOWN),
            suppressions=(reason,) if reason else (),
            dnc_registries=tuple(listed.get(address[1], ())) if address[0] == "phone" else (),
            approval_refusal=refusal,
            counters=tally.counters(candidate),
        )
        outbound = guard.OutboundMessage(
            channel=Channel(candidate.channel),
            recipient=candidate.recipient,
            recipient_domain=candidate.recipient_domain,
            country=candidate.recipient_country,
            lead_zone=candidate.lead.zone,
            not_before=candidate.not_before,
        )
        decision = guard.decide(outbound, facts, policy, now)
        candidate.record(decision, now)
        if decision.allowed:
            tally.count(candidate, now)
