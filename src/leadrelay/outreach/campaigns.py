"""Campaigns: an audience (a saved lead filter) walked through ordered steps, once a day.

A run (the daily schedule or an operator's "run now"):
1. new leads matching the audience join at step 0;
2. each member due for its step gets a draft (submitted for review: nothing leaves without a
   human-approved revision), or, once that draft is approved, a message through the same policy
   guard as every other send — the members' messages decided together, a chunk at a time
   (`queueing.queue_drafts`); then it waits `delay_days` for the next step. Calls are not all
   handed over at the run's moment: each is scheduled for a time spread across its
   recipient's call window (`pacing`), waits for it as a deferred message, and meets the whole
   guard again when it comes;
3. the report (selected, joined, drafted, awaiting approval, queued, calls scheduled with the
   first and last time, deferred, blocked by check, failed, stopped by reason) is stored and
   announced (`campaign.run_completed`).

One member's trouble never stops the others (each member's step is prepared in its own
savepoint, and a message that cannot be made is reported for its request alone: either way the
member counts as failed); trouble that would fail every member (no sender identity, a broken
template) halts the campaign and raises `campaign.halted`. A member whose lead opts out, or
whose message the guard blocks for good (consent, suppression, DNC), stops there; a reply will
stop it the same way (`stop_for_lead`, called by telemetry), and withdraws the calls still
waiting for their time.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals.models import DraftStatus
from leadrelay.approvals.service import Policy, get_draft, tenant_policy
from leadrelay.capture.models import LeadStatus
from leadrelay.capture.normalize import normalize_email
from leadrelay.capture.provider_models import LeadMessage, MessageDirection
from leadrelay.capture.service import LeadFilter, list_leads
from leadrelay.compliance.audit import append_events
from leadrelay.core.errors import Conflict, LeadRelayError, NotFound, ValidationFailed
from leadrelay.core.events import emit
from leadrelay.core.settings import Settings
from leadrelay.drafting import service as drafting
from leadrelay.drafting.evidence import Channel, Length, Tone
from leadrelay.drafting.llm import LlmDrafter
from leadrelay.drafting.templates import CTA_TEXTS
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal
from leadrelay.outreach import pacing, queueing
from leadrelay.outreach import policy as guard
from leadrelay.outreach.limits import guard_policy, outreach_policy
from leadrelay.outreach.models import (
    Campaign,
    CampaignMember,
    CampaignRun,
    CampaignStatus,
    MemberState,
    Message,
    MessageKind,
    MessageStatus,
)

MAX_AUDIENCE_PER_RUN = 5_000  # leads that may join in one run
MAX_DUE_PER_RUN = 2_000  # members handled in one run; the rest wait for the next
SEND_CHUNK = 500  # members' messages decided together (one transaction's chunk)
# A run report's first and last time a call was scheduled for (beside its counters).
SCHEDULED_FIRST = "scheduled_first_at"
SCHEDULED_LAST = "scheduled_last_at"
# Blocks that no later run would clear: the member stops there.
FINAL_BLOCKS = frozenset({"consent", "suppression", "dnc"})
AUDIENCE_KEYS = frozenset(
    {"status", "source_id", "flag", "q", "min_score", "max_score", "owner", "unassigned"}
)
TRANSITIONS: Mapping[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "activate": (frozenset({CampaignStatus.DRAFT}), CampaignStatus.ACTIVE),
    "pause": (frozenset({CampaignStatus.ACTIVE}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED, CampaignStatus.HALTED}), CampaignStatus.ACTIVE),
    "stop": (
        frozenset(
            {
                CampaignStatus.DRAFT,
                CampaignStatus.ACTIVE,
                CampaignStatus.PAUSED,
                CampaignStatus.HALTED,
            }
        ),
        CampaignStatus.STOPPED,
    ),
}


class CampaignNotFound(NotFound):
    """The campaign does not exist."""


class NotRunnable(Conflict):
    """The campaign is not active."""

    code = "campaign-not-active"


# --- definition -------------------------------------------------------------------------------


def check_definition(
    audience: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], send_time: str, timezone: str
) -> list[dict[str, str]]:
    """Every problem with a campaign's definition, as field errors (empty: it is fine)."""
    errors: list[dict[str, str]] = []
    for key in sorted(set(audience) - AUDIENCE_KEYS):
        errors.append({"field": f"audience.{key}", "reason": "unknown filter"})
    try:
        _filter(audience)
    except (TypeError, ValueError) as exc:
        errors.append({"field": "audience", "reason": str(exc)})
    if not steps:
        errors.append({"field": "steps", "reason": "at least one step"})
    for n, step in enumerate(steps):
        where = f"steps[{n}]"
        if step.get("channel") not in {c.value for c in Channel}:
            errors.append({"field": f"{where}.channel", "reason": "email, sms, whatsapp or voice"})
        if step.get("tone", "friendly") not in {t.value for t in Tone}:
            errors.append({"field": f"{where}.tone", "reason": "formal, friendly or direct"})
        if step.get("length", "medium") not in {v.value for v in Length}:
            errors.append({"field": f"{where}.length", "reason": "short, medium or long"})
        if step.get("cta", "book_call") not in CTA_TEXTS:
            errors.append({"field": f"{where}.cta", "reason": "one of " + ", ".join(CTA_TEXTS)})
        if not isinstance(step.get("if_no_reply", True), bool):
            errors.append({"field": f"{where}.if_no_reply", "reason": "true or false"})
        delay = step.get("delay_days", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 365:
            errors.append({"field": f"{where}.delay_days", "reason": "0 to 365 days"})
    try:
        time.fromisoformat(send_time)
    except ValueError:
        errors.append({"field": "send_time", "reason": "HH:MM"})
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append({"field": "timezone", "reason": "an IANA time zone, e.g. Europe/Paris"})
    return errors


def _filter(audience: Mapping[str, Any]) -> LeadFilter:
    values = {k: v for k, v in audience.items() if k in AUDIENCE_KEYS}
    for key in ("source_id", "owner"):
        if values.get(key) is not None:
            values[key] = uuid.UUID(str(values[key]))
    if values.get("status") is not None:
        values["status"] = LeadStatus(values["status"])
    # Only leads that may be contacted at all are an audience.
    values.setdefault("status", LeadStatus.NEW)
    return LeadFilter(**values)


async def create(
    session: AsyncSession,
    actor: Principal,
    *,
    name: str,
    audience: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    send_time: str,
    timezone: str,
    now: datetime,
    report_to: str | None = None,
) -> Campaign:
    errors = check_definition(audience, steps, send_time, timezone)
    if report_to is not None and normalize_email(report_to).value is None:
        errors.append({"field": "report_to", "reason": "not an e-mail address"})
    if errors:
        raise ValidationFailed("The campaign is not valid.", errors=errors)
    if await session.scalar(select(Campaign.id).where(Campaign.name == name)):
        raise Conflict(
            f"A campaign named {name!r} exists.",
            errors=[{"field": "name", "reason": "already used"}],
        )
    campaign = Campaign(
        tenant_id=actor.tenant_id,
        name=name,
        status=CampaignStatus.DRAFT,
        audience=dict(audience),
        steps=[{"delay_days": 0, **step} for step in steps],
        send_time=send_time,
        timezone=timezone,
        report_to=normalize_email(report_to).value if report_to else None,
        created_by=actor.name,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    await session.flush()
    await _audit(session, actor, "campaign.created", campaign, now=now)
    return campaign


async def get(session: AsyncSession, campaign_id: uuid.UUID, *, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    campaign = await session.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise CampaignNotFound()
    return campaign


async def transition(
    session: AsyncSession, actor: Principal, campaign_id: uuid.UUID, action: str, *, now: datetime
) -> Campaign:
    campaign = await get(session, campaign_id, lock=True)
    allowed, target = TRANSITIONS[action]
    if campaign.status not in allowed:
        raise Conflict(f"A {campaign.status} campaign cannot {action}.")
    campaign.status = target
    campaign.updated_at = now
    if target == CampaignStatus.ACTIVE:
        campaign.halted_reason = None
    await _audit(session, actor, f"campaign.{action}", campaign, now=now)
    return campaign


async def _audit(
    session: AsyncSession,
    actor: Principal,
    action: str,
    campaign: Campaign,
    *,
    now: datetime,
    **data: Any,
) -> None:
    await append_events(
        session,
        campaign.tenant_id,
        [
            actor.audit(
                action, target_type="campaign", target_id=campaign.id, name=campaign.name, **data
            )
        ],
        now=now,
    )


# --- running ----------------------------------------------------------------------------------


class _Halt(Exception):
    """Trouble that would fail every member: the campaign halts."""


def _due(campaign: Campaign, now: datetime) -> bool:
    """The daily run is due: past `send_time` locally and not yet run on this local date."""
    local = now.astimezone(ZoneInfo(campaign.timezone))
    return local.time() >= time.fromisoformat(campaign.send_time) and (
        campaign.last_run_on != local.date().isoformat()
    )


async def _join(session: AsyncSession, campaign: Campaign, now: datetime) -> tuple[int, int]:
    """New audience leads join at step 0: (selected, joined)."""
    selected: list[uuid.UUID] = []
    after: uuid.UUID | None = None
    filters = _filter(campaign.audience)
    while len(selected) < MAX_AUDIENCE_PER_RUN:
        page = await list_leads(session, filters, limit=500, after=after)
        if not page:
            break
        selected += [lead.id for lead in page]
        after = page[-1].id
    selected = selected[:MAX_AUDIENCE_PER_RUN]
    if not selected:
        return 0, 0
    inserted = await session.scalars(
        insert(CampaignMember)
        .values(
            [
                {
                    "tenant_id": campaign.tenant_id,
                    "campaign_id": campaign.id,
                    "lead_id": lead_id,
                    "step": 0,
                    "due_at": now,
                    "state": MemberState.ACTIVE,
                    "joined_at": now,
                }
                for lead_id in selected
            ]
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
        .returning(CampaignMember.id)
    )
    return len(selected), len(list(inserted))


def _stop(member: CampaignMember, reason: str, report: Counter[str]) -> None:
    member.state = MemberState.STOPPED
    member.stop_reason = reason
    report[f"stopped:{reason}"] += 1


def _advance(campaign: Campaign, member: CampaignMember, now: datetime) -> None:
    member.step += 1
    member.draft_id = None
    if member.step >= len(campaign.steps):
        member.state = MemberState.COMPLETED
        return
    delay = int(campaign.steps[member.step].get("delay_days", 0))
    member.due_at = now + timedelta(days=delay)


async def _replied(session: AsyncSession, member: CampaignMember) -> bool:
    """Whether the lead wrote back (a real reply: not an auto-reply) since joining."""
    found = await session.scalar(
        select(LeadMessage.id)
        .where(
            LeadMessage.lead_id == member.lead_id,
            LeadMessage.direction == MessageDirection.INBOUND,
            LeadMessage.received_at >= member.joined_at,
            or_(
                LeadMessage.classification.is_(None),
                LeadMessage.classification.notin_(("auto_reply", "help", "opt_in")),
            ),
        )
        .limit(1)
    )
    return found is not None


async def _prepare(
    session: AsyncSession,
    actor: Principal,
    campaign: Campaign,
    member: CampaignMember,
    report: Counter[str],
    *,
    drafter: LlmDrafter | None,
    policy: Policy,
    now: datetime,
) -> uuid.UUID | None:
    """The member's step up to its message: the reply check, the draft (made now and submitted
    for review), the review. Returns the approved draft to send; None when the member stopped
    or waits for a reviewer."""
    step = campaign.steps[member.step]
    # Every step after the first runs only if the lead has not answered since it joined
    # ("call 3 days later if no reply"), unless the step says `"if_no_reply": false`. A reply
    # normally stops the member as it arrives; this holds even when the two cross.
    if member.step > 0 and step.get("if_no_reply", True) and await _replied(session, member):
        _stop(member, "replied", report)
        return None
    if member.draft_id is None:
        request = drafting.DraftRequest(
            lead_id=member.lead_id,
            channel=Channel(step["channel"]),
            tone=Tone(step.get("tone", "friendly")),
            length=Length(step.get("length", "medium")),
            cta=step.get("cta", "book_call"),
            template=step.get("template"),
            use_llm=bool(step.get("use_llm", True)),
            submit=True,
        )
        try:
            draft = await drafting.generate(
                session, actor, request, drafter=drafter, policy=policy, now=now
            )
        except drafting.NotContactable as exc:
            _stop(member, "not contactable: " + ", ".join(e["reason"] for e in exc.errors), report)
            return None
        except (drafting.SenderMissing, drafting.TemplateNotFound) as exc:
            raise _Halt(exc.detail) from exc
        except ValidationFailed as exc:
            if any(e.get("field") == "template" for e in exc.errors):
                raise _Halt(f"step {member.step + 1}: {exc.detail}") from exc
            _stop(member, exc.detail, report)
            return None
        member.draft_id = draft.id
        report["drafted"] += 1
    draft = await get_draft(session, member.draft_id)
    if draft.status == DraftStatus.PENDING and policy.approval_required:
        report["awaiting_approval"] += 1
        return None
    if draft.status in (DraftStatus.REJECTED, DraftStatus.EXPIRED):
        _stop(member, f"draft {draft.status}", report)
        return None
    return draft.id


async def _call_times(
    session: AsyncSession,
    actor: Principal,
    campaign: Campaign,
    ready: Sequence[tuple[CampaignMember, uuid.UUID]],
    *,
    settings: Settings,
    now: datetime,
) -> dict[uuid.UUID, datetime]:
    """When each ready member whose step is a call is to be called, by member: spread across
    its recipient's call window, in member order (`pacing.spread_calls`). A member missing
    from the answer is queued as any message is (no number: `queue_drafts` reports it)."""
    members = [m for m, _ in ready if campaign.steps[m.step].get("channel") == Channel.VOICE]
    if not members:
        return {}
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None:
        return {}
    leads = await queueing.lead_facts(session, {m.lead_id for m in members})
    reachable: list[CampaignMember] = []
    calls: list[guard.OutboundMessage] = []
    for member in members:
        lead = leads.get(member.lead_id)
        if lead is None or not lead.phone_e164:
            continue
        reachable.append(member)
        calls.append(
            guard.OutboundMessage(
                Channel.VOICE, lead.phone_e164, country=lead.country, lead_zone=lead.zone
            )
        )
    policy = guard_policy(outreach_policy(tenant, settings))
    slots = pacing.spread_calls(calls, policy, now)
    return {
        member.id: slot for member, slot in zip(reachable, slots, strict=True) if slot is not None
    }


async def _send(
    session: AsyncSession,
    actor: Principal,
    campaign: Campaign,
    ready: Sequence[tuple[CampaignMember, uuid.UUID]],
    report: Counter[str],
    *,
    settings: Settings,
    keys: str,
    now: datetime,
) -> list[datetime]:
    """The ready members' messages through the policy guard, a chunk at a time, in member order
    (the caps count them in that order); each member then moves on, stops or waits. Returns
    the times the calls were scheduled for."""
    call_times = await _call_times(session, actor, campaign, ready, settings=settings, now=now)
    scheduled: list[datetime] = []
    for start in range(0, len(ready), SEND_CHUNK):
        chunk = ready[start : start + SEND_CHUNK]
        answers = await queueing.queue_drafts(
            session,
            actor,
            [
                queueing.QueueRequest(
                    draft_id,
                    f"campaign:{campaign.id}:member:{member.id}:step:{member.step}",
                    not_before=call_times.get(member.id),
                )
                for member, draft_id in chunk
            ],
            settings=settings,
            keys=keys,
            kind=MessageKind.CAMPAIGN,
            now=now,
        )
        for (member, _), answer in zip(chunk, answers, strict=True):
            if isinstance(answer, LeadRelayError):  # this member's trouble; the others go on
                report["failed"] += 1
                report[f"failed:{answer.code}"] += 1
                continue
            member.last_message_id = answer.message_id
            if answer.status == MessageStatus.BLOCKED:
                report[f"blocked:{answer.blocked_by}"] += 1
                if answer.blocked_by in FINAL_BLOCKS:
                    _stop(member, f"blocked by {answer.blocked_by}", report)
                else:
                    # Approval trouble (revoked, edited): the next run drafts this step again.
                    member.draft_id = None
                continue
            if answer.blocked_by == guard.Check.SCHEDULE and answer.retry_at is not None:
                report["scheduled"] += 1
                scheduled.append(answer.retry_at)
            else:
                report[str(answer.status)] += 1  # queued or deferred (retried when due)
            _advance(campaign, member, now)
    return scheduled


async def run(
    session: AsyncSession,
    actor: Principal,
    campaign_id: uuid.UUID,
    *,
    settings: Settings,
    keys: str,
    drafter: LlmDrafter | None,
    trigger: str,
    now: datetime,
) -> CampaignRun:
    """One run of an active campaign; its report is stored, audited and announced."""
    campaign = await get(session, campaign_id, lock=True)
    if campaign.status != CampaignStatus.ACTIVE:
        raise NotRunnable(f"The campaign is {campaign.status}; only an active one runs.")
    run_row = CampaignRun(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        trigger=trigger,
        started_at=now,
        report={},
    )
    session.add(run_row)
    report: Counter[str] = Counter()
    policy = await tenant_policy(
        session, campaign.tenant_id, default_expiry_days=settings.approval_expiry_days
    )
    selected, joined = await _join(session, campaign, now)
    report["selected"], report["joined"] = selected, joined
    due = list(
        await session.scalars(
            select(CampaignMember)
            .where(
                CampaignMember.campaign_id == campaign.id,
                CampaignMember.state == MemberState.ACTIVE,
                CampaignMember.due_at <= now,
            )
            .order_by(CampaignMember.due_at, CampaignMember.id)
            .limit(MAX_DUE_PER_RUN)
        )
    )
    report["due"] = len(due)
    halted: str | None = None
    ready: list[tuple[CampaignMember, uuid.UUID]] = []
    for member in due:
        try:
            async with session.begin_nested():
                draft_id = await _prepare(
                    session,
                    actor,
                    campaign,
                    member,
                    report,
                    drafter=drafter,
                    policy=policy,
                    now=now,
                )
        except _Halt as halt:
            halted = str(halt)
            break
        except LeadRelayError as exc:  # this member's trouble; the others go on
            report["failed"] += 1
            report[f"failed:{exc.code}"] += 1
            continue
        if draft_id is not None:
            ready.append((member, draft_id))
    # Members ready before a halt still send, as they did when each member sent in turn.
    scheduled = await _send(
        session, actor, campaign, ready, report, settings=settings, keys=keys, now=now
    )
    run_row.report = {**dict(sorted(report.items())), **_schedule_bounds(scheduled)}
    run_row.finished_at = now
    campaign.last_run_on = now.astimezone(ZoneInfo(campaign.timezone)).date().isoformat()
    if halted is not None:
        campaign.status = CampaignStatus.HALTED
        campaign.halted_reason = halted
        run_row.error = halted
        await emit(
            session,
            campaign.tenant_id,
            "campaign.halted",
            {"campaign_id": str(campaign.id), "name": campaign.name, "reason": halted},
        )
        await _audit(session, actor, "campaign.halted", campaign, now=now, reason=halted)
    await session.flush()
    await emit(
        session,
        campaign.tenant_id,
        "campaign.run_completed",
        {
            "campaign_id": str(campaign.id),
            "run_id": str(run_row.id),
            "name": campaign.name,
            "report": run_row.report,
        },
    )
    await _audit(session, actor, "campaign.run", campaign, now=now, report=run_row.report)
    if campaign.report_to:
        from leadrelay.core.jobs import defer  # jobs import this module: import at call time

        await defer(
            session,
            "outreach.email_run_report",
            tenant_id=str(campaign.tenant_id),
            run_id=str(run_row.id),
        )
    return run_row


def _schedule_bounds(scheduled: Sequence[datetime]) -> dict[str, str]:
    """The first and last time calls were scheduled for (ISO 8601, UTC), for the report."""
    if not scheduled:
        return {}
    return {
        SCHEDULED_FIRST: min(scheduled).isoformat(),
        SCHEDULED_LAST: max(scheduled).isoformat(),
    }


def scheduled_bounds(report: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """A run report's first and last scheduled call (None: it scheduled none)."""
    first, last = report.get(SCHEDULED_FIRST), report.get(SCHEDULED_LAST)
    if not isinstance(first, str) or not isinstance(last, str):
        return None
    try:
        return datetime.fromisoformat(first), datetime.fromisoformat(last)
    except ValueError:
        return None


def describe_span(first: datetime, last: datetime, zone: str) -> str:
    """ "Mon 9 Mar 11:00 – 16:30 (Europe/Paris)": two instants on the campaign's clock."""
    try:
        clock = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        clock, zone = ZoneInfo("UTC"), "UTC"
    start, end = first.astimezone(clock), last.astimezone(clock)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a} {end.day} {end:%b %H:%M}"
    return f"{start:%a} {start.day} {start:%b %H:%M} – {until} ({zone})"


def _scheduled_lines(campaign: Campaign, report: Mapping[str, Any]) -> list[str]:
    """The report's line about the calls it scheduled, when it scheduled any."""
    bounds = scheduled_bounds(report)
    if bounds is None:
        return []
    span = describe_span(*bounds, campaign.timezone)
    return [f"Calls scheduled across the call window: {report.get('scheduled', 0)}, {span}"]


def report_text(campaign: Campaign, run: CampaignRun) -> tuple[str, str]:
    """The operator's e-mail: (subject, plain-text body)."""
    report = run.report or {}
    blocked = {k.split(":", 1)[1]: v for k, v in report.items() if k.startswith("blocked:")}
    stopped = {k.split(":", 1)[1]: v for k, v in report.items() if k.startswith("stopped:")}
    lines = [
        f"Campaign: {campaign.name} ({campaign.status})",
        f"Run: {run.trigger}, {run.started_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"Selected by the audience: {report.get('selected', 0)} (joined now: "
        f"{report.get('joined', 0)})",
        f"Due for a step: {report.get('due', 0)}",
        f"Drafted: {report.get('drafted', 0)}; awaiting approval: "
        f"{report.get('awaiting_approval', 0)}",
        f"Queued to send: {report.get('queued', 0)}; deferred by caps or windows: "
        f"{report.get('deferred', 0)}",
        *_scheduled_lines(campaign, report),
        "Blocked: "
        + (", ".join(f"{check} {count}" for check, count in sorted(blocked.items())) or "none"),
        f"Failed: {report.get('failed', 0)}",
        "Stopped: "
        + (", ".join(f"{why} {count}" for why, count in sorted(stopped.items())) or "none"),
    ]
    if run.error:
        lines += ["", f"The campaign HALTED: {run.error}"]
    subject = f"{campaign.name}: run report ({report.get('queued', 0)} queued)"
    if run.error:
        subject = f"{campaign.name} HALTED: {run.error}"[:150]
    return subject, "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ScheduledCalls:
    """A campaign's calls waiting for their scheduled time."""

    count: int
    first: datetime
    last: datetime


async def scheduled_calls(session: AsyncSession, campaign_id: uuid.UUID) -> ScheduledCalls | None:
    """The campaign's calls still waiting for their time (None: none is)."""
    count, first, last = (
        await session.execute(
            select(func.count(), func.min(Message.retry_at), func.max(Message.retry_at))
            .select_from(CampaignMember)
            .join(Message, Message.id == CampaignMember.last_message_id)
            .where(
                CampaignMember.campaign_id == campaign_id,
                Message.status == MessageStatus.DEFERRED,
                Message.blocked_by == guard.Check.SCHEDULE,
            )
        )
    ).one()
    if not count or first is None or last is None:
        return None
    return ScheduledCalls(int(count), first, last)


async def due_campaigns(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    campaigns = await session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.ACTIVE)
    )
    return [c.id for c in campaigns if _due(c, now)]


async def stop_for_lead(
    session: AsyncSession, lead_id: uuid.UUID, reason: str, *, now: datetime
) -> int:
    """A reply or an opt-out: the lead leaves every campaign it is in, and its campaign calls
    still waiting for their time are not made."""
    members = list(
        await session.scalars(
            select(CampaignMember).where(
                CampaignMember.lead_id == lead_id, CampaignMember.state == MemberState.ACTIVE
            )
        )
    )
    for member in members:
        member.state = MemberState.STOPPED
        member.stop_reason = reason
    await _withdraw_scheduled(session, lead_id, reason)
    return len(members)


async def _withdraw_scheduled(session: AsyncSession, lead_id: uuid.UUID, reason: str) -> None:
    """Block the lead's scheduled campaign messages. A call scheduled for this afternoon was
    made by a step the member has already moved past (or completed), so stopping the member
    alone would not stop the call; an opt-out would (the guard reads it), a reply would not."""
    await session.execute(
        update(Message)
        .where(
            Message.lead_id == lead_id,
            Message.kind == MessageKind.CAMPAIGN,
            Message.status == MessageStatus.DEFERRED,
            Message.blocked_by == guard.Check.SCHEDULE,
        )
        .values(
            status=MessageStatus.BLOCKED,
            retry_at=None,
            block_reason=f"withdrawn before its time: the lead left the campaign ({reason})",
        )
    )
