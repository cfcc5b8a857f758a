"""Routing: the ordered rules, the teams and their reps, the work queue, first-touch SLA timers,
and a simulator that routes hypothetical facts through the live setup and shows every step of
the decision. Nothing here writes: the simulator runs the engine on a copy of the setup."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from leadrelay.capture.models import Lead
from leadrelay.console.auth import Console, SimulateRouting, ViewRouting
from leadrelay.console.rendering import is_htmx, render
from leadrelay.console.scoring import condition_text
from leadrelay.core.clock import utcnow
from leadrelay.routing import service
from leadrelay.routing.engine import Decision
from leadrelay.routing.models import Assignment, Rep, RoutingRuleRow, Team

router = APIRouter(prefix="/console/routing")


SAMPLE_FACTS: dict[str, Any] = {"country": "US", "score": 80}
MAX_FACTS_TEXT = 20_000
QUEUE_REASONS = {
    "no_rule_matched": "No rule matched",
    "no_eligible_rep": "No rep could take it",
    "fallback_cycle": "Fallback teams loop",
    "unknown_team": "Unknown team",
}


def time_left(due: datetime, now: datetime) -> str:
    """ "12 min left", "3 h 05 min left", "2 d 4 h left"."""
    minutes = max(0, int((due - now).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min left"
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min left"
    return f"{minutes // (24 * 60)} d {minutes % (24 * 60) // 60} h left"


async def _names(console: Console) -> dict[str, dict[str, str]]:
    """Team and rep names by id as text (the trace names them so)."""
    session = console.session
    return {
        "team_names": {str(team.id): team.name for team in await session.scalars(select(Team))},
        "rep_names": {str(rep.id): rep.name for rep in await session.scalars(select(Rep))},
    }


@dataclass(frozen=True, slots=True)
class Timer:
    assignment: Assignment
    breached: bool
    left: str


async def _leads(console: Console, ids: set[uuid.UUID]) -> dict[uuid.UUID, Lead]:
    if not ids:
        return {}
    return {
        lead.id: lead
        for lead in await console.session.scalars(select(Lead).where(Lead.id.in_(ids)))
    }


async def _context(console: Console) -> dict[str, Any]:
    session, now = console.session, utcnow()
    teams = list(await session.scalars(select(Team).order_by(Team.name, Team.id)))
    reps = list(await session.scalars(select(Rep).order_by(Rep.name, Rep.id)))
    rules = list(
        await session.scalars(
            select(RoutingRuleRow).order_by(RoutingRuleRow.position, RoutingRuleRow.id)
        )
    )
    queue = await service.work_queue(session)
    timers = [
        Timer(
            item,
            breached=item.breached_at is not None
            or (item.sla_due_at is not None and item.sla_due_at <= now),
            left=time_left(item.sla_due_at, now) if item.sla_due_at else "",
        )
        for item in await service.sla_timers(session)
    ]
    lead_ids = {item.lead_id for item in queue} | {timer.assignment.lead_id for timer in timers}
    return {
        "teams": teams,
        "reps_by_team": {
            team.id: [rep for rep in reps if rep.team_id == team.id] for team in teams
        },
        "team_names": {str(team.id): team.name for team in teams},
        "rep_names": {str(rep.id): rep.name for rep in reps},
        "rules": [(rule, [condition_text(c) for c in rule.when]) for rule in rules],
        "queue": queue,
        "timers": timers,
        "leads": await _leads(console, lead_ids),
        "queue_reasons": QUEUE_REASONS,
        "now": now,
    }


def _simulator_context(
    facts: str, *, decision: Decision | None = None, error: str = ""
) -> dict[str, Any]:
    return {"facts": facts, "decision": decision, "facts_error": error}


@router.get("")
async def routing_page(request: Request, console: ViewRouting) -> Response:
    context = await _context(console)
    context.update(_simulator_context(json.dumps(SAMPLE_FACTS, indent=2)))
    return render(request, "routing/page.html", context)


@router.post("/simulate")
async def simulate(
    request: Request,
    console: SimulateRouting,
    facts: Annotated[str, Form(max_length=MAX_FACTS_TEXT)] = "",
) -> Response:
    error = ""
    parsed: Any = None
    try:
        parsed = json.loads(facts) if facts.strip() else {}
    except json.JSONDecodeError as problem:
        where = f"line {problem.lineno}, column {problem.colno}"
        error = f"This is not valid JSON: {problem.msg} ({where})."
    if not error and not isinstance(parsed, dict):
        error = 'The facts are a JSON object, such as {"country": "US", "score": 80}.'
    if error:
        context = _simulator_context(facts, error=error)
        status = 422
    else:
        now = utcnow()
        setup = await service.load_setup(console.session, now=now)
        decision = service.simulate(setup, parsed, now=now)
        context = _simulator_context(facts, decision=decision)
        status = 200
    if is_htmx(request):
        context.update(await _names(console))
        return render(request, "routing/_simulator.html", context, status=status)
    page_context = await _context(console)
    page_context.update(context)
    return render(request, "routing/page.html", page_context, status=status)
