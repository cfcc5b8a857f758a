"""Routing routes: teams, reps (hours, time off), ordered rules — each checked when saved —
the read-only simulator, the work queue, SLA timers, and a lead's assignment with its trace."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture import service as capture_service
from leadrelay.compliance.audit import append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import (
    CanManageRouting,
    CanReadLeads,
    CanReadRouting,
    CanWriteLeads,
    SessionDep,
)
from leadrelay.identity.models import User
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import Principal
from leadrelay.routing import engine, service
from leadrelay.routing.models import (
    Assignment,
    AssignmentStatus,
    Rep,
    RoutingRuleRow,
    Team,
    TimeOff,
)
from leadrelay.scoring.rules import Condition

router = APIRouter(prefix="/v1", tags=["routing"])


class TeamIn(Input):
    name: str = Field(min_length=1, max_length=200)
    strategy: engine.Strategy = engine.Strategy.ROUND_ROBIN
    fallback_team_id: uuid.UUID | None = None
    required_skills: list[str] = Field(default_factory=list, max_length=50)
    sla_minutes: int | None = Field(default=None, ge=1, le=60 * 24 * 30)
    sla_reassign: bool = False
    manager_user_id: uuid.UUID | None = None


class TeamPatch(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    strategy: engine.Strategy | None = None
    fallback_team_id: uuid.UUID | None = None
    required_skills: list[str] | None = Field(default=None, max_length=50)
    sla_minutes: int | None = Field(default=None, ge=1, le=60 * 24 * 30)
    sla_reassign: bool | None = None
    manager_user_id: uuid.UUID | None = None


class TeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    strategy: str
    fallback_team_id: uuid.UUID | None
    required_skills: list[str]
    sla_minutes: int | None
    sla_reassign: bool
    manager_user_id: uuid.UUID | None


class RepIn(Input):
    team_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    user_id: uuid.UUID | None = None
    timezone: str = Field(default="UTC", max_length=64)
    skills: list[str] = Field(default_factory=list, max_length=50)
    territories: list[str] = Field(default_factory=list, max_length=50)
    capacity: int = Field(default=50, ge=0, le=100_000)
    active: bool = True
    weight: int = Field(default=1, ge=1, le=1000)
    working_hours: dict[str, Any] | None = None


class RepPatch(Input):
    team_id: uuid.UUID | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    skills: list[str] | None = Field(default=None, max_length=50)
    territories: list[str] | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=100_000)
    active: bool | None = None
    weight: int | None = Field(default=None, ge=1, le=1000)
    working_hours: dict[str, Any] | None = None


class RepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    team_id: uuid.UUID
    user_id: uuid.UUID | None
    name: str
    timezone: str
    skills: list[str]
    territories: list[str]
    capacity: int
    active: bool
    weight: int
    working_hours: dict[str, Any] | None
    assigned_total: int


class TimeOffIn(Input):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    note: str = Field(default="", max_length=200)


class TimeOffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    rep_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    note: str


class RuleIn(Input):
    name: str = Field(min_length=1, max_length=200)
    position: int = Field(ge=0, le=100_000)
    when: list[Condition] = Field(default_factory=list, max_length=20)
    team_id: uuid.UUID
    active: bool = True


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    when: list[dict[str, Any]]
    team_id: uuid.UUID
    active: bool


class SimulateIn(Input):
    """A real lead (`lead_id`) or a hypothetical one (`facts`), routed at `at` (default now)
    by the same engine as live routing, on the current reps' counters. Writes nothing."""

    lead_id: uuid.UUID | None = None
    facts: dict[str, Any] | None = None
    at: AwareDatetime | None = None


class DecisionOut(BaseModel):
    outcome: str
    team_id: uuid.UUID | None
    rep_id: uuid.UUID | None
    rule_id: uuid.UUID | None
    reason: str | None
    trace: list[dict[str, Any]]


class AssignmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    status: str
    team_id: uuid.UUID | None
    rep_id: uuid.UUID | None
    rule_id: uuid.UUID | None
    reason: str | None
    trace: list[dict[str, Any]]
    decided_at: datetime
    sla_due_at: datetime | None
    first_touch_at: datetime | None
    breached_at: datetime | None


class TeamNotFound(NotFound):
    """The team does not exist."""


class RepNotFound(NotFound):
    """The rep does not exist."""


class RuleNotFound(NotFound):
    """The routing rule does not exist."""


class InvalidRouting(ValidationFailed):
    """The routing configuration is invalid."""

    code = "invalid-routing"


async def _team(session: AsyncSession, team_id: uuid.UUID) -> Team:
    team = await session.get(Team, team_id)
    if team is None:
        raise TeamNotFound()
    return team


async def _rep(session: AsyncSession, rep_id: uuid.UUID) -> Rep:
    rep = await session.get(Rep, rep_id)
    if rep is None:
        raise RepNotFound()
    return rep


async def _check_all(session: AsyncSession) -> None:
    """Validate the whole configuration as it now stands in this transaction: every rule's
    conditions and team, every fallback chain."""
    await session.flush()
    setup = await service.load_setup(session, now=utcnow())
    problems = engine.check_routing(setup.rules, setup.teams)
    errors = [p.as_error("rules") for p in problems]
    for team in setup.teams.values():
        reason = engine.check_fallback_chain(team.id, setup.teams)
        if reason:
            errors.append({"field": f"teams ({team.name}).fallback_team_id", "reason": reason})
    if errors:
        raise InvalidRouting(f"{len(errors)} problem(s) in the routing setup", errors=errors)


def _check_rep_fields(timezone: str | None, hours: dict[str, Any] | None) -> None:
    errors = []
    if timezone is not None and (reason := engine.check_timezone(timezone)):
        errors.append({"field": "timezone", "reason": reason})
    if hours is not None:
        _, problems = engine.check_working_hours(hours)
        errors += [{"field": "working_hours", "reason": p} for p in problems]
    if errors:
        raise InvalidRouting("The rep's time zone or hours are invalid.", errors=errors)


async def _audit(
    session: AsyncSession, actor: Principal, action: str, target: Any, **data: Any
) -> None:
    await append_events(
        session,
        actor.tenant_id,
        [actor.audit(action, target_type=action.split(".")[0], target_id=target, **data)],
        now=utcnow(),
    )


# --- teams and reps --------------------------------------------------------------------------


@router.get("/teams")
async def list_teams(session: SessionDep, _: CanReadRouting) -> list[TeamOut]:
    teams = await session.scalars(select(Team).order_by(Team.name, Team.id))
    return [TeamOut.model_validate(t) for t in teams]


@router.post("/teams", status_code=status.HTTP_201_CREATED)
async def create_team(body: TeamIn, session: SessionDep, actor: CanManageRouting) -> TeamOut:
    if body.fallback_team_id is not None:
        await _known_team(session, body.fallback_team_id, "fallback_team_id")
    await _known_user(session, body.manager_user_id, "manager_user_id")
    team = Team(tenant_id=actor.tenant_id, **body.model_dump(mode="python"))
    session.add(team)
    await _check_all(session)
    await _audit(session, actor, "team.created", team.id, name=team.name)
    return TeamOut.model_validate(team)


@router.patch("/teams/{team_id}")
async def update_team(
    team_id: uuid.UUID, body: TeamPatch, session: SessionDep, actor: CanManageRouting
) -> TeamOut:
    team = await _team(session, team_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("fallback_team_id") is not None:
        await _known_team(session, changes["fallback_team_id"], "fallback_team_id")
    await _known_user(session, changes.get("manager_user_id"), "manager_user_id")
    for name, value in changes.items():
        setattr(team, name, value)
    await _check_all(session)
    await _audit(session, actor, "team.updated", team.id, fields=sorted(changes))
    return TeamOut.model_validate(team)


@router.get("/reps")
async def list_reps(session: SessionDep, _: CanReadRouting) -> list[RepOut]:
    reps = await session.scalars(select(Rep).order_by(Rep.name, Rep.id))
    return [RepOut.model_validate(r) for r in reps]


@router.post("/reps", status_code=status.HTTP_201_CREATED)
async def create_rep(body: RepIn, session: SessionDep, actor: CanManageRouting) -> RepOut:
    await _known_team(session, body.team_id, "team_id")
    await _known_user(session, body.user_id, "user_id")
    _check_rep_fields(body.timezone, body.working_hours)
    rep = Rep(tenant_id=actor.tenant_id, **body.model_dump(mode="python"))
    session.add(rep)
    await session.flush()
    await _audit(session, actor, "rep.created", rep.id, team_id=str(rep.team_id))
    await session.refresh(rep)
    return RepOut.model_validate(rep)


@router.patch("/reps/{rep_id}")
async def update_rep(
    rep_id: uuid.UUID, body: RepPatch, session: SessionDep, actor: CanManageRouting
) -> RepOut:
    rep = await _rep(session, rep_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("team_id") is not None:
        await _known_team(session, changes["team_id"], "team_id")
    _check_rep_fields(changes.get("timezone"), changes.get("working_hours"))
    for name, value in changes.items():
        setattr(rep, name, value)
    await session.flush()
    await _audit(session, actor, "rep.updated", rep.id, fields=sorted(changes))
    return RepOut.model_validate(rep)


@router.post("/reps/{rep_id}/time-off", status_code=status.HTTP_201_CREATED)
async def add_time_off(
    rep_id: uuid.UUID, body: TimeOffIn, session: SessionDep, actor: CanManageRouting
) -> TimeOffOut:
    rep = await _rep(session, rep_id)
    if body.ends_at <= body.starts_at:
        raise InvalidRouting(
            "Time off must end after it starts.",
            errors=[{"field": "ends_at", "reason": "must be after starts_at"}],
        )
    entry = TimeOff(tenant_id=actor.tenant_id, rep_id=rep.id, **body.model_dump())
    session.add(entry)
    await session.flush()
    await _audit(session, actor, "rep.time_off_added", rep.id, entry=str(entry.id))
    return TimeOffOut.model_validate(entry)


# --- rules -----------------------------------------------------------------------------------


@router.get("/routing/rules")
async def list_rules(session: SessionDep, _: CanReadRouting) -> list[RuleOut]:
    rules = await session.scalars(
        select(RoutingRuleRow).order_by(RoutingRuleRow.position, RoutingRuleRow.id)
    )
    return [RuleOut.model_validate(r) for r in rules]


async def _known_team(session: AsyncSession, team_id: uuid.UUID, field: str) -> None:
    if await session.get(Team, team_id) is None:
        raise InvalidRouting(
            "The team does not exist.", errors=[{"field": field, "reason": "unknown team"}]
        )


async def _known_user(session: AsyncSession, user_id: uuid.UUID | None, field: str) -> None:
    if user_id is not None and await session.get(User, user_id) is None:
        raise InvalidRouting(
            "The user does not exist.", errors=[{"field": field, "reason": "unknown user"}]
        )


def _rule_values(body: RuleIn) -> dict[str, Any]:
    values = body.model_dump(mode="json")
    values["team_id"] = body.team_id
    return values


@router.post("/routing/rules", status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleIn, session: SessionDep, actor: CanManageRouting) -> RuleOut:
    """Add a rule; the whole setup is checked (conditions, team, fallback cycles) first."""
    await _known_team(session, body.team_id, "team_id")
    rule = RoutingRuleRow(tenant_id=actor.tenant_id, **_rule_values(body))
    session.add(rule)
    await _check_all(session)
    await _audit(session, actor, "routing_rule.created", rule.id, name=rule.name)
    return RuleOut.model_validate(rule)


@router.put("/routing/rules/{rule_id}")
async def replace_rule(
    rule_id: uuid.UUID, body: RuleIn, session: SessionDep, actor: CanManageRouting
) -> RuleOut:
    rule = await session.get(RoutingRuleRow, rule_id)
    if rule is None:
        raise RuleNotFound()
    await _known_team(session, body.team_id, "team_id")
    for name, value in _rule_values(body).items():
        setattr(rule, name, value)
    await _check_all(session)
    await _audit(session, actor, "routing_rule.updated", rule.id, name=rule.name)
    return RuleOut.model_validate(rule)


@router.delete("/routing/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: uuid.UUID, session: SessionDep, actor: CanManageRouting) -> None:
    rule = await session.get(RoutingRuleRow, rule_id)
    if rule is None:
        raise RuleNotFound()
    await session.delete(rule)
    await _audit(session, actor, "routing_rule.deleted", rule_id, name=rule.name)


# --- decisions -------------------------------------------------------------------------------


def _decision(decision: engine.Decision) -> DecisionOut:
    return DecisionOut(
        outcome=str(decision.outcome),
        team_id=decision.lead_team_id,
        rep_id=decision.rep_id,
        rule_id=decision.rule_id,
        reason=decision.reason,
        trace=decision.trace,
    )


@router.post("/routing/simulate")
async def simulate(body: SimulateIn, session: SessionDep, actor: CanReadRouting) -> DecisionOut:
    """Who would get this lead, and why — the live engine on live counters; writes nothing."""
    if (body.lead_id is None) == (body.facts is None):
        raise ValidationFailed(
            "Give exactly one of lead_id or facts.",
            errors=[{"field": "lead_id", "reason": "exactly one of lead_id, facts"}],
        )
    now = body.at or utcnow()
    if body.lead_id is not None:
        if not actor.can(Permission.LEADS_READ):
            raise Forbidden(f"Simulating a real lead needs {Permission.LEADS_READ}.")
        await capture_service.access_lead(session, actor, body.lead_id)
        facts = (await service.facts_for(session, [body.lead_id], now=now)).get(body.lead_id)
        if facts is None:
            raise NotFound("The lead is merged into another one; simulate the survivor.")
    else:
        facts = dict(body.facts or {})
    setup = await service.load_setup(session, now=now)
    return _decision(service.simulate(setup, facts, now=now))


@router.get("/routing/queue")
async def work_queue(session: SessionDep, _: CanReadRouting) -> list[AssignmentOut]:
    """Leads no rule or rep could take, oldest first, each with its reason and trace."""
    return [AssignmentOut.model_validate(a) for a in await service.work_queue(session)]


@router.get("/routing/sla")
async def sla_timers(session: SessionDep, _: CanReadRouting) -> list[AssignmentOut]:
    """Assignments waiting for a first touch, the most urgent first."""
    return [AssignmentOut.model_validate(a) for a in await service.sla_timers(session)]


@router.get("/leads/{lead_id}/assignment")
async def lead_assignment(
    lead_id: uuid.UUID, session: SessionDep, actor: CanReadLeads
) -> AssignmentOut:
    await capture_service.access_lead(session, actor, lead_id)
    current = await service.current_assignment(session, lead_id)
    if current is None:
        raise NotFound("The lead has not been routed.")
    return AssignmentOut.model_validate(current)


@router.post("/leads/{lead_id}/route")
async def route_lead(
    lead_id: uuid.UUID, session: SessionDep, actor: CanManageRouting
) -> AssignmentOut:
    """Route the lead now: a queued lead is routed again; an assigned one answers 409."""
    await capture_service.access_lead(session, actor, lead_id)
    now = utcnow()
    current = await service.current_assignment(session, lead_id, lock=True)
    if current is not None and current.status == AssignmentStatus.ASSIGNED:
        raise Conflict("The lead is already assigned; reassign it instead.")
    if current is not None:
        await service.release(session, lead_id, status=AssignmentStatus.REASSIGNED, now=now)
    routed = await service.route_leads(
        session,
        actor.tenant_id,
        [lead_id],
        now=now,
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    if not routed:
        raise NotFound("The lead is merged into another one; route the survivor.")
    assignment = await session.get(Assignment, routed[0].assignment_id)
    return AssignmentOut.model_validate(assignment)


@router.post("/leads/{lead_id}/touch")
async def first_touch(
    lead_id: uuid.UUID, session: SessionDep, actor: CanWriteLeads
) -> AssignmentOut:
    """Record the rep's first contact: the SLA timer stops (idempotent)."""
    await capture_service.access_lead(session, actor, lead_id)
    current = await service.current_assignment(session, lead_id, lock=True)
    if current is None or current.status != AssignmentStatus.ASSIGNED:
        raise NotFound("The lead has no current assignment.")
    if current.first_touch_at is None:
        current.first_touch_at = utcnow()
        await _audit(session, actor, "lead.first_touch", lead_id)
    return AssignmentOut.model_validate(current)
