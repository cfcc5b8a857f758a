"""Routing: load the tenant's rules, teams and reps, let the engine decide, persist the
assignment with its trace — and the same load without writes for the simulator.

Fairness under concurrency: routing a chunk holds a per-tenant advisory lock for its
transaction, and reads the reps' counters (open leads, last assigned sequence) only after
taking it. Two workers routing at once therefore decide one after the other on fresh
counters, so a round-robin pool stays even (1,000 leads over 7 reps: 142 or 143 each) and no
lead is assigned twice (a unique index on the current assignment backs this up).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.facts import lead_facts
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.events import emit_many
from leadrelay.routing import engine
from leadrelay.routing.models import (
    Assignment,
    AssignmentStatus,
    Team,
)
from leadrelay.scoring.rules import Condition

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('routing:' || %s::text, 0))"


async def lock_routing(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Take the tenant's routing lock (to the end of the transaction; taking it again is free).

    Routing moves reps' counters and audits under it, so a path that gives a rep capacity back
    or audits and then routes takes it first: otherwise it could hold a rep's row or the audit
    chain's head that a chunk routing meanwhile waits for, while it waits for that chunk's
    lock (see docs/architecture.md, "Lock order")."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_LOCK, (str(tenant_id),))


@dataclass(frozen=True, slots=True)
class Setup:
    """Everything the engine reads, loaded once per chunk."""

    rules: list[engine.RoutingRule]
    teams: dict[uuid.UUID, engine.TeamSpec]
    reps: list[engine.RepSpec]
    states: dict[uuid.UUID, engine.RepState]
    sla_minutes: dict[uuid.UUID, int | None]
    team_seq: dict[uuid.UUID, int]


@lru_cache(maxsize=1024)
def _conditions(stored: str) -> tuple[Condition, ...]:
    """A rule's conditions from their stored JSON, validated once per distinct value."""
    return tuple(Condition.model_validate(c) for c in json.loads(stored))


@lru_cache(maxsize=1024)
def _working_hours(stored: str) -> engine.WorkingHours | None:
    """A rep's working hours from their stored JSON, parsed (and checked) once per distinct
    value: every routed chunk and every simulation loads every rep, and parsing their hours
    cost more than deciding."""
    hours, _ = engine.check_working_hours(json.loads(stored))
    return hours


# The setup in one round trip: four statements sent together over a pipeline, plain rows (the
# ORM's objects cost more than the engine's whole decision). JSON comes as its text, which is
# also what the parse caches above are keyed on.
_RULES = (
    'SELECT id, name, position, "when"::text, team_id, active FROM routing_rules '
    "ORDER BY position, id"
)
_TEAMS = (
    "SELECT id, name, strategy, fallback_team_id, required_skills, sla_minutes, assign_seq "
    "FROM teams"
)
_REPS = (
    "SELECT id, team_id, name, timezone, active, working_hours::text, capacity, skills, "
    "territories, weight, open_leads, last_assigned_seq, assigned_total FROM reps ORDER BY id"
)
_TIME_OFF = "SELECT rep_id, starts_at, ends_at FROM rep_time_off WHERE ends_at > %s"


async def load_setup(session: AsyncSession, *, now: datetime) -> Setup:
    await session.flush()  # a rep or rule changed in this transaction is read as it now is
    connection = await raw_connection(session)
    async with (
        connection.pipeline(),
        connection.cursor() as rules,
        connection.cursor() as teams,
        connection.cursor() as reps,
        connection.cursor() as time_off,
    ):
        await rules.execute(_RULES)
        await teams.execute(_TEAMS)
        await reps.execute(_REPS)
        await time_off.execute(_TIME_OFF, (now,))
        rule_rows, team_rows = await rules.fetchall(), await teams.fetchall()
        rep_rows, off_rows = await reps.fetchall(), await time_off.fetchall()
    off: dict[uuid.UUID, list[engine.TimeOff]] = {}
    for rep_id, starts_at, ends_at in off_rows:
        off.setdefault(rep_id, []).append(engine.TimeOff(starts_at, ends_at))
    return Setup(
        rules=[
            engine.RoutingRule(
                id=id_, name=name, position=position, when=_conditions(when),
                team_id=team_id, active=active,
            )
            for id_, name, position, when, team_id, active in rule_rows
        ],
        teams={
            row[0]: engine.TeamSpec(
                id=row[0], name=row[1], strategy=engine.Strategy(row[2]),
                fallback_team_id=row[3], required_skills=tuple(row[4] or ()),
            )
            for row in team_rows
        },
        reps=[
            engine.RepSpec(
                id=row[0], team_id=row[1], name=row[2], timezone=row[3], active=row[4],
                working_hours=_working_hours(row[5]) if row[5] is not None else None,
                time_off=tuple(off.get(row[0], ())), capacity=row[6],
                skills=frozenset(row[7] or ()), territories=frozenset(row[8] or ()),
                weight=max(1, row[9]),
            )
            for row in rep_rows
        ],
        states={
            row[0]: engine.RepState(
                open_leads=row[10], last_assigned_seq=row[11], assigned_total=row[12]
            )
            for row in rep_rows
        },
        sla_minutes={row[0]: row[5] for row in team_rows},
        team_seq={row[0]: row[6] for row in team_rows},
    )  # fmt: skip


_SCORES = (
    "SELECT s.lead_id, s.score FROM lead_scores s JOIN icp_versions v ON v.id = s.version_id "
    "WHERE v.status = 'active' AND s.lead_id = ANY(%b::uuid[])"
)


async def facts_for(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, dict[str, Any]]:
    """Lead facts plus `score` (by the active ICP version) and `territory`: an enrichment
    attribute when present, else the lead's country, else the country of its phone number."""
    facts = await lead_facts(session, lead_ids, now=now)
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_SCORES, (list(facts),))
        scores: dict[uuid.UUID, int] = dict(await cursor.fetchall())
    for lead_id, lead in facts.items():
        lead["score"] = scores.get(lead_id)
        territory = lead.get("attributes.territory") or lead.get("country")
        lead["territory"] = territory or lead.get("phone_country")
    return facts


def simulate(setup: Setup, facts: dict[str, Any], *, now: datetime) -> engine.Decision:
    return engine.decide(
        facts,
        rules=setup.rules,
        teams=setup.teams,
        reps=setup.reps,
        states=setup.states,
        now=now,
    )


# The ids are made here, so that nothing waits for the insert's answer (see `route_leads`).
_INSERT_ASSIGNMENTS = (
    "INSERT INTO lead_assignments (tenant_id, decided_at, id, lead_id, status, team_id, rep_id, "
    "rule_id, reason, trace, sla_due_at) "
    "SELECT %s, %s, id, lead_id, status, team_id, rep_id, rule_id, reason, trace, sla_due_at "
    "FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::uuid[], %b::uuid[], %b::uuid[], "
    "%b::text[], %b::jsonb[], %b::timestamptz[]) "
    "AS t(id, lead_id, status, team_id, rep_id, rule_id, reason, trace, sla_due_at)"
)
# Decided leads go to PostgreSQL this many at a time, in pipeline mode: the server writes one
# part (the assignments with their traces, the chunk's heaviest write) while the engine decides
# the next, so the two work at once instead of in turn.
_PART = 100
_UPDATE_REPS = (
    "UPDATE reps AS r SET last_assigned_seq = t.seq, assigned_total = t.total, "
    "open_leads = r.open_leads + t.added "
    "FROM unnest(%b::uuid[], %b::bigint[], %b::bigint[], %b::int[]) AS t(id, seq, total, added) "
    "WHERE r.id = t.id"
)
# Ending open assignments gives the reps their capacity back, in the same statement.
_CLOSE_FOR_LEADS = (
    "WITH ended AS (UPDATE lead_assignments SET closed_at = %s WHERE lead_id = ANY(%b::uuid[]) "
    "AND status = 'assigned' AND closed_at IS NULL RETURNING rep_id), "
    "per_rep AS (SELECT rep_id, count(*) AS n FROM ended WHERE rep_id IS NOT NULL "
    "GROUP BY rep_id) "
    "UPDATE reps AS r SET open_leads = greatest(r.open_leads - p.n, 0) FROM per_rep p "
    "WHERE r.id = p.rep_id"
)
_UPDATE_TEAMS = (
    "UPDATE teams AS m SET assign_seq = t.seq "
    "FROM unnest(%b::uuid[], %b::bigint[]) AS t(id, seq) WHERE m.id = t.id"
)
_CURRENT = (
    "SELECT lead_id FROM lead_assignments WHERE lead_id = ANY(%b::uuid[]) "
    "AND status <> 'reassigned'"
)


@dataclass(frozen=True, slots=True)
class Routed:
    lead_id: uuid.UUID
    assignment_id: uuid.UUID
    decision: engine.Decision


async def route_leads(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    lead_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    exclude_reps: Sequence[uuid.UUID] = (),
    actor_type: str = "system",
    actor_id: str | None = None,
) -> list[Routed]:
    """Assign each lead that has no current assignment (a retried job changes nothing)."""
    if not lead_ids:
        return []
    await lock_routing(session, tenant_id)
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_CURRENT, (list(lead_ids),))
        taken = {row[0] for row in await cursor.fetchall()}
    todo = [lead_id for lead_id in dict.fromkeys(lead_ids) if lead_id not in taken]
    facts = await facts_for(session, todo, now=now)
    if not facts:
        return []
    setup = await load_setup(session, now=now)
    excluded = set(exclude_reps)
    reps = [r for r in setup.reps if r.id not in excluded]
    states, team_seq = dict(setup.states), dict(setup.team_seq)
    availability = engine.Availability(now)
    live = [lead_id for lead_id in todo if lead_id in facts]  # not merged or gone meanwhile
    routed: list[Routed] = []
    async with connection.pipeline(), connection.cursor() as cursor:
        for start in range(0, len(live), _PART):
            part: list[Routed] = []
            for lead_id in live[start : start + _PART]:
                decision = engine.decide(
                    facts[lead_id],
                    rules=setup.rules,
                    teams=setup.teams,
                    reps=reps,
                    states=states,
                    now=now,
                    availability=availability,
                )
                team = decision.lead_team_id
                if decision.rep_id is not None and team is not None:
                    # The engine's cursor, advanced here so the next lead sees it.
                    seq = team_seq[team] = team_seq.get(team, 0) + 1
                    state = states[decision.rep_id]
                    states[decision.rep_id] = replace(
                        state,
                        open_leads=state.open_leads + 1,
                        last_assigned_seq=seq,
                        assigned_total=state.assigned_total + 1,
                    )
                part.append(Routed(lead_id, uuid.uuid4(), decision))
            # Sent, not waited for: the engine goes on with the next part meanwhile.
            await cursor.execute(
                _INSERT_ASSIGNMENTS, (tenant_id, now, *_assignment_columns(part, setup, now))
            )
            routed += part
        await _save_counters(cursor, setup, states, team_seq)
    # Leaving the pipeline waited for every statement in it (and raised what failed).
    await _announce(session, tenant_id, routed, now=now, actor_type=actor_type, actor_id=actor_id)
    return routed


def _assignment_columns(part: Sequence[Routed], setup: Setup, now: datetime) -> list[list[Any]]:
    """The insert's nine arrays, one value per routed lead in each."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for routed in part:
        decision = routed.decision
        assigned = decision.rep_id is not None
        minutes = setup.sla_minutes.get(decision.lead_team_id) if decision.lead_team_id else None
        values = (
            routed.assignment_id,
            routed.lead_id,
            AssignmentStatus.ASSIGNED.value if assigned else AssignmentStatus.QUEUED.value,
            decision.lead_team_id,
            decision.rep_id,
            decision.rule_id,
            decision.reason,
            Jsonb(decision.trace),
            now + timedelta(minutes=minutes) if assigned and minutes else None,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def _save_counters(
    cursor: Any,
    setup: Setup,
    states: dict[uuid.UUID, engine.RepState],
    team_seq: dict[uuid.UUID, int],
) -> None:
    """The reps' and teams' counters as the chunk left them."""
    changed_reps = [r for r in states if states[r] != setup.states.get(r)]
    changed_teams = [t for t in team_seq if team_seq[t] != setup.team_seq.get(t)]
    if changed_reps:
        await cursor.execute(
            _UPDATE_REPS,
            (
                changed_reps,
                [states[r].last_assigned_seq for r in changed_reps],
                [states[r].assigned_total for r in changed_reps],
                [states[r].open_leads - setup.states[r].open_leads for r in changed_reps],
            ),
        )
    if changed_teams:
        await cursor.execute(_UPDATE_TEAMS, (changed_teams, [team_seq[t] for t in changed_teams]))


async def _announce(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    routed: Sequence[Routed],
    *,
    now: datetime,
    actor_type: str,
    actor_id: str | None,
) -> None:
    """`lead.assigned` / `lead.queued` for each lead (outbox) and its audit link."""
    events: list[tuple[str, dict[str, Any]]] = []
    audit: list[AuditEntry] = []
    for one in routed:
        decision = one.decision
        payload = {
            "lead_id": str(one.lead_id),
            "assignment_id": str(one.assignment_id),
            "team_id": str(decision.lead_team_id) if decision.lead_team_id else None,
            "rep_id": str(decision.rep_id) if decision.rep_id else None,
            "reason": decision.reason,
        }
        action = "lead.assigned" if decision.rep_id is not None else "lead.queued"
        events.append((action, payload))
        audit.append(
            AuditEntry(
                action,
                actor_type=actor_type,
                actor_id=actor_id,
                target_type="lead",
                target_id=str(one.lead_id),
                data={k: v for k, v in payload.items() if k != "lead_id"},
            )
        )
    await emit_many(session, tenant_id, events)
    await append_events(session, tenant_id, audit, now=now)


async def release(
    session: AsyncSession, lead_id: uuid.UUID, *, status: AssignmentStatus, now: datetime
) -> Assignment | None:
    """End the lead's current assignment (reassignment or re-routing from the queue)."""
    current = await current_assignment(session, lead_id, lock=True)
    if current is None:
        return None
    await end_assignment(session, current, status=status, now=now)
    return current


async def end_assignment(
    session: AsyncSession, assignment: Assignment, *, status: AssignmentStatus, now: datetime
) -> None:
    """Move an assignment out of the open state, giving its rep the capacity back."""
    was_open = assignment.status == AssignmentStatus.ASSIGNED and assignment.closed_at is None
    assignment.status = status
    assignment.closed_at = now
    if was_open and assignment.rep_id is not None:
        await session.execute(
            text("UPDATE reps SET open_leads = greatest(open_leads - 1, 0) WHERE id = :id"),
            {"id": assignment.rep_id},
        )
    await session.flush()


async def close_for_leads(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID], *, now: datetime
) -> None:
    """The leads' work is over (an outcome arrived): their open assignments close."""
    if not lead_ids:
        return
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_CLOSE_FOR_LEADS, (now, list(lead_ids)))


async def current_assignment(
    session: AsyncSession, lead_id: uuid.UUID, *, lock: bool = False
) -> Assignment | None:
    query = select(Assignment).where(
        Assignment.lead_id == lead_id, Assignment.status != AssignmentStatus.REASSIGNED
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def work_queue(session: AsyncSession, *, limit: int = 200) -> list[Assignment]:
    """Leads no rule or rep could take, oldest first, with the reason."""
    return list(
        await session.scalars(
            select(Assignment)
            .where(Assignment.status == AssignmentStatus.QUEUED)
            .order_by(Assignment.decided_at, Assignment.id)
            .limit(limit)
        )
    )


async def sla_timers(session: AsyncSession, *, limit: int = 200) -> list[Assignment]:
    """Open assignments with a first-touch deadline and no touch yet, the most urgent first
    (breached ones included, so a manager sees them until someone acts)."""
    return list(
        await session.scalars(
            select(Assignment)
            .where(
                Assignment.status == AssignmentStatus.ASSIGNED,
                Assignment.closed_at.is_(None),
                Assignment.first_touch_at.is_(None),
                Assignment.sla_due_at.is_not(None),
            )
            .order_by(Assignment.sla_due_at, Assignment.id)
            .limit(limit)
        )
    )


@dataclass(frozen=True, slots=True)
class SlaSweep:
    breached: int
    reassigned: int


async def enforce_sla(session: AsyncSession, tenant_id: uuid.UUID, *, now: datetime) -> SlaSweep:
    """Mark every assignment past its first-touch deadline as breached (once), alert through
    `sla.breached` (outbox: webhooks and the team manager) and the audit trail, and hand the
    lead to someone else where the team asks for it (the breaching rep is left out)."""
    overdue = list(
        await session.scalars(
            select(Assignment)
            .where(
                Assignment.status == AssignmentStatus.ASSIGNED,
                Assignment.closed_at.is_(None),
                Assignment.first_touch_at.is_(None),
                Assignment.breached_at.is_(None),
                Assignment.sla_due_at < now,
            )
            .order_by(Assignment.sla_due_at)
            .limit(500)
            .with_for_update(skip_locked=True)
        )
    )
    if not overdue:
        return SlaSweep(0, 0)
    teams = {t.id: t for t in await session.scalars(select(Team))}
    if any(teams[a.team_id].sla_reassign for a in overdue if a.team_id in teams):
        # Before the audit and the reps' counters: the reassignment below routes.
        await lock_routing(session, tenant_id)
    events: list[tuple[str, dict[str, Any]]] = []
    audit: list[AuditEntry] = []
    reassign: list[Assignment] = []
    for assignment in overdue:
        assignment.breached_at = now
        team = teams.get(assignment.team_id) if assignment.team_id else None
        payload = {
            "lead_id": str(assignment.lead_id),
            "assignment_id": str(assignment.id),
            "rep_id": str(assignment.rep_id) if assignment.rep_id else None,
            "team_id": str(assignment.team_id) if assignment.team_id else None,
            "manager_user_id": str(team.manager_user_id) if team and team.manager_user_id else None,
            "due_at": assignment.sla_due_at.isoformat() if assignment.sla_due_at else None,
        }
        events.append(("sla.breached", payload))
        audit.append(
            AuditEntry(
                "lead.sla_breached",
                actor_type="system",
                target_type="lead",
                target_id=str(assignment.lead_id),
                data={k: v for k, v in payload.items() if k != "lead_id"},
            )
        )
        if team is not None and team.sla_reassign:
            reassign.append(assignment)
    await emit_many(session, tenant_id, events)
    await append_events(session, tenant_id, audit, now=now)
    reassigned = 0
    for assignment in reassign:
        await end_assignment(session, assignment, status=AssignmentStatus.REASSIGNED, now=now)
        exclude = [assignment.rep_id] if assignment.rep_id else []
        routed = await route_leads(
            session, tenant_id, [assignment.lead_id], now=now, exclude_reps=exclude
        )
        reassigned += sum(1 for r in routed if r.decision.rep_id is not None)
    return SlaSweep(len(overdue), reassigned)
