"""Approved drafts become messages, the policy guard decides each one, and what it lets through is
queued for delivery: a chunk of drafts at a time, in the caller's transaction.

Every way of sending goes through here — one message from the API (`service.queue_draft`, a
chunk of one), a campaign run, deferred messages whose time has come (`release_due`) — so each
meets the same facts and the same ordered guard (`decisions.decide`), counted under the same
per-tenant lock (`counting`). A chunk costs a constant number of statements, however many
drafts it holds: drafts, leads and existing messages; the send guard (`approvals.handoff_many`);
consent, suppression and do-not-call hits; the lock and the counters; one insert; the audit
links; one delivery job per `DELIVERY_CHUNK` queued messages and one outbox insert for the
blocked ones.

Each message is persisted, under its idempotency key, before any provider sees it: a request
whose key already made a message gets that message back and nothing is sent again.

A request may name a time not to send before (a campaign's call spread across the call
window): its message is decided now, so what could never go is refused now, and waits as a
deferred message (`Check.SCHEDULE`) until `release_due` decides it again at that time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals import service as approvals
from leadrelay.compliance.audit import append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.errors import Conflict, LeadRelayError, NotFound
from leadrelay.core.events import emit_many
from leadrelay.core.jobs import defer
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal
from leadrelay.outreach import policy as guard
from leadrelay.outreach import providers
from leadrelay.outreach.decisions import Candidate, LeadFacts, decide
from leadrelay.outreach.limits import outreach_policy
from leadrelay.outreach.models import MessageKind, MessageStatus

DELIVER_TASK = "outreach.deliver"
# Queued messages per delivery job: a job hands its messages over together, and an interrupted
# job fails what it had marked `sending` (never sent twice), so a job stays this small.
DELIVERY_CHUNK = 200
RELEASE_CHUNK = 500  # deferred messages decided again per tenant and run
_ACTIONS = {
    MessageStatus.QUEUED: "message.queued",
    MessageStatus.DEFERRED: "message.deferred",
    MessageStatus.BLOCKED: "message.blocked",
}


class NotSendable(Conflict):
    """This draft cannot become a message as it is."""

    code = "not-sendable"


@dataclass(frozen=True, slots=True)
class QueueRequest:
    draft_id: uuid.UUID
    idempotency_key: str | None = None  # default: one message per approved revision
    not_before: datetime | None = None  # scheduled: deferred until then (`Check.SCHEDULE`)


@dataclass(frozen=True, slots=True)
class Queued:
    """What became of a request: its message, made now (`created`) or earlier under its key;
    a deferred one is decided again at `retry_at` (a scheduled one: its time)."""

    message_id: uuid.UUID
    status: MessageStatus
    blocked_by: str | None
    created: bool
    retry_at: datetime | None = None


# --- what is read ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draft:
    id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    revision: int | None  # None: the current revision is missing
    subject: str | None
    body: str | None
    content_sha256: str | None


_DRAFTS = (
    "SELECT d.id, d.lead_id, d.channel, r.number, r.subject, r.body, r.content_sha256 "
    "FROM drafts d "
    "LEFT JOIN draft_revisions r ON r.draft_id = d.id AND r.number = d.current_revision "
    "WHERE d.id = ANY(%b::uuid[])"
)
_LEADS = (
    "SELECT l.id, l.email, l.phone_e164, l.country, l.attributes -> 'timezone', s.legal_basis "
    "FROM leads l LEFT JOIN sources s ON s.id = l.source_id WHERE l.id = ANY(%b::uuid[])"
)
# A stored message, as the guard decides it again (the columns of `_Stored`).
_STORED = (
    "SELECT id, idempotency_key, status, blocked_by, lead_id, draft_id, channel, dry_run, "
    "recipient, recipient_domain, recipient_country, subject, body, counted_at, retry_at "
    "FROM messages "
)
_BY_KEY = _STORED + "WHERE idempotency_key = ANY(%b::text[]) ORDER BY id FOR UPDATE"
_DUE = (
    _STORED + "WHERE status = %s AND retry_at <= %s "
    "ORDER BY retry_at LIMIT %s FOR UPDATE SKIP LOCKED"
)


@dataclass(frozen=True, slots=True)
class _Stored:
    id: uuid.UUID
    idempotency_key: str
    status: str
    blocked_by: str | None
    lead_id: uuid.UUID
    draft_id: uuid.UUID | None
    channel: str
    dry_run: bool
    recipient: str
    recipient_domain: str | None
    recipient_country: str | None
    subject: str | None
    body: str
    counted_at: datetime | None
    retry_at: datetime | None

    @property
    def scheduled_for(self) -> datetime | None:
        """The time its sender scheduled it for, while it waits for it."""
        return self.retry_at if self.blocked_by == guard.Check.SCHEDULE else None


async def _drafts(cursor: Any, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, _Draft]:
    await cursor.execute(_DRAFTS, (list(ids),))
    return {row[0]: _Draft(*row) for row in await cursor.fetchall()}


async def _leads(cursor: Any, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, LeadFacts]:
    await cursor.execute(_LEADS, (list(ids),))
    leads = {}
    for lead_id, email, phone, country, zone, basis in await cursor.fetchall():
        zone = zone if isinstance(zone, str) and zone else None
        leads[lead_id] = LeadFacts(lead_id, email, phone, country, zone, basis)
    return leads


async def lead_facts(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, LeadFacts]:
    """What the guard reads about each lead (address, number, country, zone, legal basis)."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        return await _leads(cursor, ids)


# --- what the guard decides ------------------------------------------------------------------


@dataclass(slots=True)
class _New:
    """A message about to be made: what the guard decides, and what only its row holds."""

    candidate: Candidate
    idempotency_key: str
    provider: str
    content_sha256: str


def _stored_candidate(
    stored: _Stored, lead: LeadFacts, *, not_before: datetime | None = None
) -> Candidate:
    """A stored message decided again: held until `not_before` when given, else until the time
    it was scheduled for, if it was."""
    return Candidate(
        id=stored.id,
        lead=lead,
        draft_id=stored.draft_id,
        channel=stored.channel,
        dry_run=stored.dry_run,
        recipient=stored.recipient,
        recipient_domain=stored.recipient_domain,
        recipient_country=stored.recipient_country,
        subject=stored.subject,
        body=stored.body,
        status=MessageStatus(stored.status),
        counted_at=stored.counted_at,
        not_before=not_before or stored.scheduled_for,
    )


def recipient_of(lead: LeadFacts, channel: Channel) -> tuple[str, str | None]:
    """The address (and, for e-mail, its domain) a message on `channel` goes to."""
    if channel is Channel.EMAIL:
        if not lead.email:
            raise NotSendable(
                "The lead has no e-mail address.",
                errors=[{"field": "lead.email", "reason": "missing"}],
            )
        return lead.email, lead.email.rsplit("@", 1)[1].lower()
    if not lead.phone_e164:
        raise NotSendable(
            "The lead has no valid phone number.",
            errors=[{"field": "lead.phone_e164", "reason": "missing"}],
        )
    return lead.phone_e164, None


def _answer(candidate: Candidate, *, created: bool) -> Queued:
    decision = candidate.decided
    return Queued(candidate.id, candidate.status, decision.blocked_by, created, decision.retry_at)


def _stored_answer(stored: _Stored) -> Queued:
    status = MessageStatus(stored.status)
    return Queued(stored.id, status, stored.blocked_by, False, stored.retry_at)


# --- writing ---------------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO messages (id, tenant_id, kind, created_by, created_at, lead_id, draft_id, "
    "channel, provider, dry_run, idempotency_key, status, recipient, recipient_domain, "
    "recipient_country, subject, body, content_sha256, policy_trace, blocked_by, block_reason, "
    "retry_at, counted_at) "
    "SELECT t.id, %s, %s, %s, %s, t.lead_id, t.draft_id, t.channel, t.provider, t.dry_run, "
    "t.key, t.status, t.recipient, t.domain, t.country, t.subject, t.body, t.sha, t.trace, "
    "t.blocked_by, t.reason, t.retry_at, t.counted_at "
    "FROM unnest(%b::uuid[], %b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::bool[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::jsonb[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[]) "
    "AS t(id, lead_id, draft_id, channel, provider, dry_run, key, status, recipient, domain, "
    "country, subject, body, sha, trace, blocked_by, reason, retry_at, counted_at) "
    # The same key made by a concurrent sender meanwhile: its message stands.
    "ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id"
)
_UPDATE = (
    "UPDATE messages AS m SET status = t.status, policy_trace = t.trace, "
    "blocked_by = t.blocked_by, block_reason = t.reason, retry_at = t.retry_at, "
    "counted_at = t.counted_at "
    "FROM unnest(%b::uuid[], %b::text[], %b::jsonb[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::timestamptz[]) "
    "AS t(id, status, trace, blocked_by, reason, retry_at, counted_at) WHERE m.id = t.id"
)


def _decision_columns(candidates: Sequence[Candidate]) -> list[list[Any]]:
    """status, trace, blocked_by, block_reason, retry_at, counted_at: one list each."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for c in candidates:
        decision = c.decided
        record = guard.trace_json(decision)
        values = (
            c.status.value,
            Jsonb([dict(step) for step in record["trace"]]),
            decision.blocked_by,
            decision.reason,
            decision.retry_at,
            c.counted_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def _insert(
    session: AsyncSession,
    actor: Principal,
    new: Sequence[_New],
    *,
    kind: MessageKind,
    now: datetime,
) -> set[uuid.UUID]:
    """Insert the new messages; returns the ids inserted (a key taken meanwhile is not)."""
    if not new:
        return set()
    decided = [n.candidate for n in new]
    status, trace, blocked_by, reason, retry_at, counted_at = _decision_columns(decided)
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _INSERT,
            (
                actor.tenant_id,
                kind.value,
                actor.name,
                now,
                [c.id for c in decided],
                [c.lead_id for c in decided],
                [c.draft_id for c in decided],
                [c.channel for c in decided],
                [n.provider for n in new],
                [c.dry_run for c in decided],
                [n.idempotency_key for n in new],
                status,
                [c.recipient for c in decided],
                [c.recipient_domain for c in decided],
                [c.recipient_country for c in decided],
                [c.subject for c in decided],
                [c.body for c in decided],
                [n.content_sha256 for n in new],
                trace,
                blocked_by,
                reason,
                retry_at,
                counted_at,
            ),
        )
        return {row[0] for row in await cursor.fetchall()}


async def _update(session: AsyncSession, candidates: Sequence[Candidate]) -> None:
    if not candidates:
        return
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_UPDATE, ([c.id for c in candidates], *_decision_columns(candidates)))


async def _announce(
    session: AsyncSession, actor: Principal, decided: Sequence[Candidate], *, now: datetime
) -> None:
    """The audit link of each decision; delivery jobs for the queued messages; the
    `message.blocked` event of each blocked one."""
    if not decided:
        return
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                _ACTIONS[c.status],
                target_type="message",
                target_id=c.id,
                lead_id=str(c.lead_id),
                channel=c.channel,
                dry_run=c.dry_run,
                blocked_by=c.blocked_by,
            )
            for c in decided
        ],
        now=now,
    )
    queued = [str(c.id) for c in decided if c.status == MessageStatus.QUEUED]
    for start in range(0, len(queued), DELIVERY_CHUNK):
        await defer(
            session,
            DELIVER_TASK,
            tenant_id=str(actor.tenant_id),
            message_ids=queued[start : start + DELIVERY_CHUNK],
        )
    blocked = [c for c in decided if c.status == MessageStatus.BLOCKED]
    await emit_many(
        session,
        actor.tenant_id,
        [
            (
                "message.blocked",
                {
                    "message_id": str(c.id),
                    "lead_id": str(c.lead_id),
                    "blocked_by": c.blocked_by,
                    "reason": c.decided.reason,
                },
            )
            for c in blocked
        ],
    )


# --- the entry points ------------------------------------------------------------------------


async def queue_drafts(
    session: AsyncSession,
    actor: Principal,
    requests: Sequence[QueueRequest],
    *,
    settings: Settings,
    keys: str,
    kind: MessageKind,
    now: datetime,
) -> list[Queued | LeadRelayError]:
    """Each draft's current revision as a message, decided by the guard, in the order given
    (caps count them in that order), and queued for delivery when allowed. For each request:
    what became of it, or why it could not become a message (the draft or its lead is gone,
    the lead has no address for the channel); one request's trouble leaves the others alone.
    A key that already made a message returns that message: sent nothing again, and decided
    again only if it was blocked (say, approved since)."""
    if not requests:
        return []
    # Held for the whole chunk: the send guard reads the tenant's approval policy from the
    # session's identity map, which keeps only weak references.
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    view = outreach_policy(tenant, settings)
    await session.flush()  # pending ORM rows (a draft just approved) are read below
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        drafts = await _drafts(cursor, {r.draft_id for r in requests})
        wanted = {
            r.idempotency_key or f"draft:{d.id}:revision:{d.revision}"
            for r in requests
            if (d := drafts.get(r.draft_id)) is not None
        }
        await cursor.execute(_BY_KEY, (list(wanted),))
        existing = {row[1]: _Stored(*row) for row in await cursor.fetchall()}
        leads = await _leads(cursor, {d.lead_id for d in drafts.values()})

    answers: list[Queued | LeadRelayError | tuple[Candidate, bool]] = []
    by_key: dict[str, Queued | Candidate] = {}
    candidates: list[Candidate] = []
    new: list[_New] = []
    for request in requests:
        draft = drafts.get(request.draft_id)
        if draft is None:
            answers.append(approvals.DraftNotFound())
            continue
        if draft.revision is None or draft.body is None:
            answers.append(approvals.DraftNotFound("The draft's current revision is missing."))
            continue
        key = request.idempotency_key or f"draft:{draft.id}:revision:{draft.revision}"
        lead = leads.get(draft.lead_id)
        if lead is None:
            answers.append(NotFound("The draft's lead does not exist."))
            continue
        earlier = by_key.get(key)  # the same key twice in one chunk: the first one stands
        if isinstance(earlier, Queued):
            answers.append(earlier)
            continue
        if earlier is not None:
            answers.append((earlier, False))
            continue
        stored = existing.get(key)
        if stored is not None and stored.status != MessageStatus.BLOCKED:
            found = _stored_answer(stored)
            by_key[key] = found
            answers.append(found)
            continue
        if stored is not None:
            # Nothing left with it; asked again (say, once approved), the guard decides anew.
            candidate = _stored_candidate(stored, lead, not_before=request.not_before)
        else:
            channel = Channel(draft.channel)
            try:
                recipient, domain = recipient_of(lead, channel)
            except NotSendable as error:
                answers.append(error)
                continue
            candidate = Candidate(
                id=uuid.uuid4(),
                lead=lead,
                draft_id=draft.id,
                channel=channel.value,
                dry_run=view.dry_run,
                recipient=recipient,
                recipient_domain=domain,
                recipient_country=lead.country,
                subject=draft.subject,
                body=draft.body,
                not_before=request.not_before,
            )
            provider = providers.provider_for(channel, settings, dry_run=view.dry_run)
            new.append(_New(candidate, key, provider, draft.content_sha256 or ""))
        by_key[key] = candidate
        candidates.append(candidate)
        answers.append((candidate, stored is None))

    await decide(session, actor.tenant_id, candidates, keys=keys, view=view, now=now)
    inserted = await _insert(session, actor, new, kind=kind, now=now)
    made = {n.candidate.id for n in new}
    await _update(session, [c for c in candidates if c.id not in made])
    raced = await _made_meanwhile(session, [n for n in new if n.candidate.id not in inserted])
    await _announce(session, actor, [c for c in candidates if c.id not in raced], now=now)
    results: list[Queued | LeadRelayError] = []
    for answer in answers:
        if isinstance(answer, tuple):
            candidate, created = answer
            results.append(raced.get(candidate.id) or _answer(candidate, created=created))
        else:
            results.append(answer)
    return results


async def _made_meanwhile(session: AsyncSession, lost: Sequence[_New]) -> dict[uuid.UUID, Queued]:
    """For new messages whose key a concurrent sender took first: the message that stands."""
    if not lost:
        return {}
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_BY_KEY, ([n.idempotency_key for n in lost],))
        stored = {row[1]: _Stored(*row) for row in await cursor.fetchall()}
    return {n.candidate.id: _stored_answer(stored[n.idempotency_key]) for n in lost}


async def release_due(
    session: AsyncSession, actor: Principal, *, settings: Settings, keys: str, now: datetime
) -> int:
    """Deferred messages whose time has come go through the guard again (it may block them
    for a new reason, or defer them once more); returns how many were due."""
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None:
        return 0
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_DUE, (MessageStatus.DEFERRED.value, now, RELEASE_CHUNK))
        due = [_Stored(*row) for row in await cursor.fetchall()]
        if not due:
            return 0
        leads = await _leads(cursor, {m.lead_id for m in due})
    candidates = [_stored_candidate(m, leads[m.lead_id]) for m in due if m.lead_id in leads]
    view = outreach_policy(tenant, settings)
    await decide(session, actor.tenant_id, candidates, keys=keys, view=view, now=now)
    await _update(session, candidates)
    await _announce(session, actor, candidates, now=now)
    return len(due)
