"""Campaigns in the console: the list (status, steps, schedule, last run, members by state), the
"New campaign" form, and one campaign with the actions its status allows (activate, pause,
resume, stop, run now), its members and its run reports, compared in a stacked bar chart.

The rules are the service's (`outreach.campaigns`): the definition is checked there and its
field errors (`steps[0].cta`, `timezone`, a name already used) are shown at the fields of the
form; a transition the status does not allow is refused there too. A run drafts each due step
for review: nothing leaves before a person approves it, and every approved message still goes
through the policy guard. A run's calls are scheduled across the call window: the page shows
how many still wait for their time and between which times, and each run's report how many it
scheduled.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from leadrelay.capture import sources
from leadrelay.capture.models import Lead, Source
from leadrelay.console.auth import Console, RunCampaigns, ViewCampaigns, settings_of
from leadrelay.console.drafting import CTA_LABELS
from leadrelay.console.leads import KNOWN_FLAGS, UNASSIGNED
from leadrelay.console.outreach import CHANNEL_LABELS, CHANNELS, CHECK_LABELS
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import Conflict, ValidationFailed
from leadrelay.drafting.api import drafter_of
from leadrelay.drafting.evidence import Length, Tone
from leadrelay.drafting.templates import CTA_TEXTS
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import campaigns
from leadrelay.outreach.api import keys_of
from leadrelay.outreach.models import (
    Campaign,
    CampaignMember,
    CampaignRun,
    CampaignStatus,
    MemberState,
)
from leadrelay.routing.models import Rep

router = APIRouter(prefix="/console/campaigns")

MAX_STEPS = 5  # rows of the form's steps fieldset (the API takes up to 20)
MAX_NAME = 200
MAX_SCORE = 100
MAX_DELAY_DAYS = 365
MAX_QUERY = 200
MAX_FLAG = 40
MAX_ZONE = 64
MAX_CHOICE = 40
MEMBERS_SHOWN = 20
RUNS_SHOWN = 20
RUNS_CHARTED = 10
DEFAULT_SEND_TIME = "10:00"
_SEND_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
TONES = tuple(tone.value for tone in Tone)
LENGTHS = tuple(length.value for length in Length)
STATUS_TONES = {
    CampaignStatus.DRAFT.value: "muted",
    CampaignStatus.ACTIVE.value: "good",
    CampaignStatus.PAUSED.value: "warn",
    CampaignStatus.HALTED.value: "bad",
    CampaignStatus.STOPPED.value: "muted",
}
MEMBER_STATES = tuple(state.value for state in MemberState)
MEMBER_TONES = {
    MemberState.ACTIVE.value: "info",
    MemberState.COMPLETED.value: "good",
    MemberState.STOPPED.value: "muted",
}
# The actions each status allows, in the order the page shows them (the service decides).
ACTIONS = ("activate", "resume", "pause", "stop")
ACTION_NOTICES = {
    "activate": "Active: it runs every day at {when}. Each step is drafted for review first.",
    "pause": "Paused: no run until it is resumed. Members keep their place.",
    "resume": "Active again: the next daily run picks up where the members are.",
    "stop": "Stopped for good: no member gets another step. The reports stay.",
}
COUNTER_LABELS = {
    "selected": "Selected by the audience",
    "joined": "Joined",
    "due": "Due for a step",
    "drafted": "Drafted for review",
    "awaiting_approval": "Awaiting approval",
    "queued": "Queued",
    "scheduled": "Calls scheduled",
    "deferred": "Deferred",
    "failed": "Failed",
}
COUNTER_TONES = {
    "joined": "info",
    "drafted": "info",
    "awaiting_approval": "info",
    "queued": "good",
    "scheduled": "info",
    "deferred": "warn",
    "failed": "bad",
}
# What the chart compares across runs: what became of the members that were due.
CHART_SERIES = (
    ("queued", "Queued", "#0f8a5f"),
    ("scheduled", "Calls scheduled", "#0e7490"),
    ("deferred", "Deferred", "#e59a1a"),
    ("blocked", "Blocked", "#c2283a"),
    ("awaiting_approval", "Awaiting approval", "#1d5fc7"),
    ("failed", "Failed", "#7c3aed"),
    ("stopped", "Stopped", "#98a2b3"),
)


@cache
def time_zones() -> tuple[str, ...]:
    """IANA zone names the time zone field suggests (any the server knows is accepted)."""
    return tuple(sorted(available_timezones()))


# --- the form ---------------------------------------------------------------------------------


@dataclass(slots=True)
class StepRow:
    """One row of the steps fieldset as typed; a row without a channel is no step."""

    channel: str = ""
    delay_days: str = ""
    tone: str = Tone.FRIENDLY.value
    length: str = Length.MEDIUM.value
    cta: str = "book_call"


def _blank_steps() -> list[StepRow]:
    return [StepRow(channel="email", delay_days="0")] + [StepRow() for _ in range(MAX_STEPS - 1)]


@dataclass(slots=True)
class CampaignForm:
    """The "New campaign" form as typed (kept for re-display), and its field errors: a step's
    are named `step-<row>-<field>`."""

    name: str = ""
    min_score: str = ""
    source: str = ""
    flag: str = ""
    q: str = ""
    owner: str = ""
    steps: list[StepRow] = field(default_factory=_blank_steps)
    send_time: str = DEFAULT_SEND_TIME
    timezone: str = "UTC"
    report_to: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Definition:
    """What the form asks the service for, and which form row each step came from."""

    audience: dict[str, Any]
    steps: list[dict[str, Any]]
    rows: list[int]


def _whole(text: str, highest: int) -> int | None:
    """A typed whole number from 0 to `highest` ("3.0" is 3), else None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not value.is_integer() or not 0 <= value <= highest:
        return None
    return int(value)


def _sentence(reason: str) -> str:
    reason = reason.strip() or "Not valid"
    reason = reason[:1].upper() + reason[1:]
    return reason if reason.endswith(".") else reason + "."


def _read_audience(
    form: CampaignForm, source_ids: set[uuid.UUID], rep_ids: set[uuid.UUID]
) -> dict[str, Any]:
    """The audience as the API stores it (`AudienceIn`, defaults left out)."""
    audience: dict[str, Any] = {}
    if form.min_score:
        score = _whole(form.min_score, MAX_SCORE)
        if score is None:
            form.errors["min_score"] = f"A whole number from 0 to {MAX_SCORE}."
        else:
            audience["min_score"] = score
    if form.source:
        try:
            source_id = uuid.UUID(form.source)
        except ValueError:
            source_id = None
        if source_id is None or source_id not in source_ids:
            form.errors["source"] = "Choose one of this workspace's sources."
        else:
            audience["source_id"] = str(source_id)
    if form.flag:
        audience["flag"] = form.flag
    if form.q:
        audience["q"] = form.q
    if form.owner == UNASSIGNED:
        audience["unassigned"] = True
    elif form.owner:
        try:
            owner = uuid.UUID(form.owner)
        except ValueError:
            owner = None
        if owner is None or owner not in rep_ids:
            form.errors["owner"] = "Choose one of the reps, or unassigned leads."
        else:
            audience["owner"] = str(owner)
    return audience


def _read_steps(form: CampaignForm) -> tuple[list[dict[str, Any]], list[int]]:
    """The filled rows as steps (the first one's delay is always 0: it goes on joining)."""
    steps: list[dict[str, Any]] = []
    rows: list[int] = []
    for index, row in enumerate(form.steps):
        typed_delay = row.delay_days not in ("", "0")
        if not row.channel:
            if typed_delay and index:
                form.errors[f"step-{index}-channel"] = "Choose a channel, or clear the row."
            continue
        step: dict[str, Any] = {
            "channel": row.channel,
            "tone": row.tone,
            "length": row.length,
            "cta": row.cta,
        }
        if steps:
            delay = _whole(row.delay_days or "0", MAX_DELAY_DAYS)
            if delay is None:
                form.errors[f"step-{index}-delay_days"] = (
                    f"A whole number of days from 0 to {MAX_DELAY_DAYS}."
                )
            else:
                step["delay_days"] = delay
        steps.append(step)
        rows.append(index)
    return steps, rows


def read_form(
    form: CampaignForm, source_ids: set[uuid.UUID], rep_ids: set[uuid.UUID]
) -> Definition:
    """The definition the form describes; what the console checks itself is in `form.errors`
    (the service checks the rest)."""
    if not form.name:
        form.errors["name"] = "Name the campaign."
    elif len(form.name) > MAX_NAME:
        form.errors["name"] = f"At most {MAX_NAME} characters."
    if not _SEND_TIME.fullmatch(form.send_time):
        form.errors["send_time"] = "A time of day as HH:MM, such as 09:30."
    audience = _read_audience(form, source_ids, rep_ids)
    steps, rows = _read_steps(form)
    return Definition(audience, steps, rows)


def add_service_errors(
    form: CampaignForm, errors: Sequence[Mapping[str, Any]], rows: Sequence[int]
) -> None:
    """The service's field errors at the form's fields: `steps[n].cta` is the n-th filled row's
    CTA, `audience.min_score` the min score field, and so on."""
    for item in errors:
        name = str(item.get("field") or "form")
        reason = _sentence(str(item.get("reason") or "not valid"))
        found = re.fullmatch(r"steps\[(\d+)\]\.(\w+)", name)
        if found:
            position = int(found.group(1))
            row = rows[position] if position < len(rows) else position
            key = f"step-{row}-{found.group(2)}"
        elif name == "steps":
            key, reason = "steps", "Add at least one step: choose its channel."
        elif name.startswith("audience"):
            key = {
                "audience.min_score": "min_score",
                "audience.source_id": "source",
                "audience.owner": "owner",
                "audience.flag": "flag",
                "audience.q": "q",
            }.get(name, "audience")
        else:
            key = name
        form.errors.setdefault(key, reason)


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignRow:
    campaign: Campaign
    steps: str
    members: dict[str, int]
    last_run: datetime | None


@dataclass(frozen=True, slots=True)
class StepView:
    number: int
    channel: str
    delay_days: int
    tone: str
    length: str
    cta: str
    cta_label: str
    cta_text: str


@dataclass(frozen=True, slots=True)
class ReportRow:
    key: str
    label: str
    value: int
    tone: str
    detail: bool  # a breakdown of the row above it (failed:<code>)


@dataclass(frozen=True, slots=True)
class RunView:
    run: CampaignRun
    number: int
    counters: list[ReportRow]
    scheduled_span: str | None = None  # when its first and last call were scheduled for


@dataclass(frozen=True, slots=True)
class ScheduledView:
    """The campaign's calls waiting for their time, for the page."""

    count: int
    span: str


def _count(value: object) -> int:
    """A number from a report or a step (JSON: trust no shape); 0 when it is none."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def steps_summary(steps: Sequence[Mapping[str, Any]]) -> str:
    """ "email → +3 d email": each step's channel, and the days it waits after the one before."""
    parts: list[str] = []
    for index, step in enumerate(steps):
        channel = str(step.get("channel") or "?")
        delay = _count(step.get("delay_days", 0))
        parts.append(f"+{delay} d {channel}" if index and delay else channel)
    return " → ".join(parts)


def step_views(steps: Sequence[Mapping[str, Any]]) -> list[StepView]:
    views: list[StepView] = []
    for index, step in enumerate(steps):
        cta = str(step.get("cta") or "book_call")
        tone = str(step.get("tone") or Tone.FRIENDLY.value)
        texts = CTA_TEXTS.get(cta, {})
        views.append(
            StepView(
                number=index + 1,
                channel=str(step.get("channel") or "?"),
                delay_days=_count(step.get("delay_days", 0)),
                tone=tone,
                length=str(step.get("length") or Length.MEDIUM.value),
                cta=cta,
                cta_label=CTA_LABELS.get(cta, cta.replace("_", " ")),
                cta_text=texts.get(Tone(tone), "") if tone in TONES else "",
            )
        )
    return views


def counters(report: Mapping[str, Any]) -> list[ReportRow]:
    """A run's report in reading order: what joined, what was due, what became of it (blocked
    by check, failed by code, stopped by reason)."""
    shown: list[ReportRow] = []
    # The scheduled calls' first and last times are shown beside the counters, not as one.
    keys = [k for k in report if k not in (campaigns.SCHEDULED_FIRST, campaigns.SCHEDULED_LAST)]
    ordered = ("selected", "joined", "due", "drafted", "awaiting_approval", "queued", "scheduled")
    for key in (*ordered, "deferred"):
        if key in report:
            shown.append(
                ReportRow(
                    key,
                    COUNTER_LABELS[key],
                    _count(report[key]),
                    COUNTER_TONES.get(key, ""),
                    False,
                )
            )
    for key in sorted(k for k in keys if k.startswith("blocked:")):
        check = key.split(":", 1)[1]
        label = "Blocked: " + CHECK_LABELS.get(check, check)
        shown.append(ReportRow(key, label, _count(report[key]), "bad", False))
    if "failed" in report:
        shown.append(ReportRow("failed", "Failed", _count(report["failed"]), "bad", False))
    for key in sorted(k for k in keys if k.startswith("failed:")):
        shown.append(ReportRow(key, key.split(":", 1)[1], _count(report[key]), "", True))
    for key in sorted(k for k in keys if k.startswith("stopped:")):
        label = "Stopped: " + key.split(":", 1)[1]
        shown.append(ReportRow(key, label, _count(report[key]), "muted", False))
    known = {counter.key for counter in shown}
    for key in sorted(k for k in keys if k not in known):
        shown.append(ReportRow(key, key.replace("_", " "), _count(report[key]), "", False))
    return shown


def scheduled_span(report: Mapping[str, Any], zone: str) -> str | None:
    """When a run's first and last call were scheduled for, on the campaign's clock."""
    bounds = campaigns.scheduled_bounds(report)
    return campaigns.describe_span(*bounds, zone) if bounds else None


def series_value(report: Mapping[str, Any], series: str) -> int:
    """One bar of the chart: blocked and stopped add up their checks and reasons."""
    if series in ("blocked", "stopped"):
        prefix = series + ":"
        return sum(_count(value) for key, value in report.items() if key.startswith(prefix))
    return _count(report.get(series, 0))


def runs_chart(runs: Sequence[RunView]) -> dict[str, Any]:
    """A Chart.js configuration (plain JSON: the page has no inline script): the last runs,
    oldest on the left, each a stack of what became of the members that were due."""
    charted = list(reversed(runs[:RUNS_CHARTED]))
    axis = {"grid": {"color": "#e3e8f0"}, "ticks": {"color": "#69758a"}}
    return {
        "type": "bar",
        "data": {
            "labels": [
                f"#{view.number} · {view.run.started_at.strftime('%d %b %H:%M')}"
                for view in charted
            ],
            "datasets": [
                {
                    "label": label,
                    "key": key,
                    "data": [series_value(view.run.report or {}, key) for view in charted],
                    "backgroundColor": color,
                    "stack": "members",
                    "borderRadius": 3,
                    "maxBarThickness": 56,
                }
                for key, label, color in CHART_SERIES
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"position": "bottom"}},
            "scales": {
                "x": {**axis, "stacked": True},
                "y": {
                    **axis,
                    "stacked": True,
                    "beginAtZero": True,
                    "ticks": {"color": "#69758a", "precision": 0},
                    "title": {"display": True, "text": "Members"},
                },
            },
        },
    }


async def _members_by_state(console: Console) -> dict[uuid.UUID, dict[str, int]]:
    rows = await console.session.execute(
        select(CampaignMember.campaign_id, CampaignMember.state, func.count()).group_by(
            CampaignMember.campaign_id, CampaignMember.state
        )
    )
    found: dict[uuid.UUID, dict[str, int]] = {}
    for campaign_id, state, count in rows:
        found.setdefault(campaign_id, {})[str(state)] = int(count)
    return found


async def _last_runs(console: Console) -> dict[uuid.UUID, datetime]:
    rows = await console.session.execute(
        select(CampaignRun.campaign_id, func.max(CampaignRun.started_at)).group_by(
            CampaignRun.campaign_id
        )
    )
    return {campaign_id: started for campaign_id, started in rows}


async def _campaign_rows(console: Console) -> list[CampaignRow]:
    found = await console.session.scalars(
        select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id)
    )
    members = await _members_by_state(console)
    last_runs = await _last_runs(console)
    return [
        CampaignRow(
            campaign,
            steps_summary(campaign.steps or []),
            members.get(campaign.id, {}),
            last_runs.get(campaign.id),
        )
        for campaign in found
    ]


async def _reps(console: Console) -> list[Rep]:
    return list(await console.session.scalars(select(Rep).order_by(Rep.name, Rep.id)))


async def _tenant_zone(console: Console) -> str:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    return str((tenant.settings or {}).get("timezone") or "UTC")


def _labels() -> dict[str, Any]:
    return {
        "status_tones": STATUS_TONES,
        "member_tones": MEMBER_TONES,
        "member_states": MEMBER_STATES,
        "channel_labels": CHANNEL_LABELS,
        "cta_labels": CTA_LABELS,
    }


# --- the list and the form ---------------------------------------------------------------------


async def _panel(
    request: Request,
    console: Console,
    *,
    form: CampaignForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    all_sources: list[Source] = await sources.list_sources(console.session)
    context: dict[str, Any] = {
        "rows": await _campaign_rows(console),
        "form": form or CampaignForm(timezone=await _tenant_zone(console)),
        "sources": all_sources,
        "reps": await _reps(console),
        "flags": KNOWN_FLAGS,
        "unassigned": UNASSIGNED,
        "channels": CHANNELS,
        "tones": TONES,
        "lengths": LENGTHS,
        "ctas": list(CTA_TEXTS),
        "zones": time_zones(),
        "limits": {"score": MAX_SCORE, "delay": MAX_DELAY_DAYS, "steps": MAX_STEPS},
        "can_write": console.can(Permission.OUTREACH_SEND),
        "panel_notices": notices or [],
        **_labels(),
    }
    template = "campaigns/_panel.html" if is_htmx(request) else "campaigns/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def campaigns_page(request: Request, console: ViewCampaigns) -> Response:
    return await _panel(request, console)


Choice = Annotated[str, Form(max_length=MAX_CHOICE)]
StepValues = Annotated[list[str] | None, Form(max_length=MAX_STEPS)]


def _step_rows(
    channels: list[str], delays: list[str], tones: list[str], lengths: list[str], ctas: list[str]
) -> list[StepRow]:
    """The fieldset's rows as typed, in order (each row sends every one of its fields, so the
    lists line up); a value longer than any choice is cut, and refused all the same."""

    def at(values: list[str], index: int, default: str) -> str:
        return values[index].strip()[:MAX_CHOICE] if index < len(values) else default

    rows: list[StepRow] = []
    for index in range(MAX_STEPS):
        rows.append(
            StepRow(
                channel=at(channels, index, ""),
                delay_days=at(delays, index, ""),
                tone=at(tones, index, Tone.FRIENDLY.value),
                length=at(lengths, index, Length.MEDIUM.value),
                cta=at(ctas, index, "book_call"),
            )
        )
    return rows


@router.post("")
async def create_campaign(
    request: Request,
    console: RunCampaigns,
    name: Annotated[str, Form(max_length=MAX_NAME * 2)] = "",
    min_score: Annotated[str, Form(max_length=20)] = "",
    source: Choice = "",
    flag: Annotated[str, Form(max_length=MAX_FLAG)] = "",
    q: Annotated[str, Form(max_length=MAX_QUERY)] = "",
    owner: Choice = "",
    step_channel: StepValues = None,
    step_delay_days: StepValues = None,
    step_tone: StepValues = None,
    step_length: StepValues = None,
    step_cta: StepValues = None,
    send_time: Annotated[str, Form(max_length=20)] = "",
    timezone: Annotated[str, Form(max_length=MAX_ZONE)] = "",
    report_to: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """A draft campaign, through `campaigns.create` (audited there); its field errors, and a
    name already used, are shown at the fields."""
    form = CampaignForm(
        name=name.strip(),
        min_score=min_score.strip(),
        source=source.strip(),
        flag=flag.strip(),
        q=q.strip(),
        owner=owner.strip(),
        steps=_step_rows(
            step_channel or [],
            step_delay_days or [],
            step_tone or [],
            step_length or [],
            step_cta or [],
        ),
        send_time=send_time.strip(),
        timezone=timezone.strip(),
        report_to=report_to.strip(),
    )
    form.timezone = form.timezone or await _tenant_zone(console)
    source_ids = {item.id for item in await sources.list_sources(console.session)}
    rep_ids = {rep.id for rep in await _reps(console)}
    definition = read_form(form, source_ids, rep_ids)
    if form.errors:
        # The service's own checks too, so every problem shows at once.
        add_service_errors(
            form,
            campaigns.check_definition(
                definition.audience, definition.steps, form.send_time, form.timezone
            ),
            definition.rows,
        )
        notice = Notice("error", "Not saved: check the marked fields.")
        return await _panel(request, console, form=form, notices=[notice], status=422)
    try:
        async with console.session.begin_nested():
            campaign = await campaigns.create(
                console.session,
                console.principal,
                name=form.name,
                audience=definition.audience,
                steps=definition.steps,
                send_time=form.send_time,
                timezone=form.timezone,
                now=utcnow(),
                report_to=form.report_to or None,
            )
    except ValidationFailed as error:
        add_service_errors(form, error.errors, definition.rows)
        notice = Notice("error", f"Not saved: {error.detail} Check the marked fields.")
        return await _panel(request, console, form=form, notices=[notice], status=422)
    except Conflict as error:
        form.errors["name"] = f"{error.detail} Choose another name."
        notice = Notice("error", "Not saved: the name is already used.")
        return await _panel(request, console, form=form, notices=[notice], status=409)
    if not is_htmx(request):
        return RedirectResponse(f"/console/campaigns/{campaign.id}", status_code=303)
    notice = Notice(
        "success",
        f"Campaign “{campaign.name}” saved as a draft: activate it to run every day at "
        f"{campaign.send_time} {campaign.timezone}.",
        href=f"/console/campaigns/{campaign.id}",
        link="Open it",
    )
    return await _panel(request, console, notices=[notice])


# --- one campaign ------------------------------------------------------------------------------


def allowed_actions(status: str) -> list[str]:
    """What the service lets a campaign in this status do (`campaigns.TRANSITIONS`)."""
    return [action for action in ACTIONS if status in campaigns.TRANSITIONS[action][0]]


async def _audience_names(console: Console, audience: Mapping[str, Any]) -> dict[str, str]:
    """The source and the rep the audience names, by their names."""
    names: dict[str, str] = {}
    for key, model in (("source_id", Source), ("owner", Rep)):
        value = audience.get(key)
        if not value:
            continue
        try:
            row_id = uuid.UUID(str(value))
        except ValueError:
            names[key] = "(unknown)"
            continue
        name = await console.session.scalar(select(model.name).where(model.id == row_id))
        names[key] = str(name) if name is not None else "(deleted)"
    return names


async def _detail(
    request: Request,
    console: Console,
    campaign: Campaign,
    *,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    session = console.session
    counts = {
        str(state): int(count)
        for state, count in await session.execute(
            select(CampaignMember.state, func.count())
            .where(CampaignMember.campaign_id == campaign.id)
            .group_by(CampaignMember.state)
        )
    }
    members = list(
        await session.scalars(
            select(CampaignMember)
            .where(CampaignMember.campaign_id == campaign.id)
            .order_by(CampaignMember.joined_at, CampaignMember.id)
            .limit(MEMBERS_SHOWN)
        )
    )
    lead_ids = {member.lead_id for member in members}
    leads = (
        {lead.id: lead for lead in await session.scalars(select(Lead).where(Lead.id.in_(lead_ids)))}
        if lead_ids
        else {}
    )
    total_runs = int(
        await session.scalar(select(func.count()).where(CampaignRun.campaign_id == campaign.id))
        or 0
    )
    found = list(
        await session.scalars(
            select(CampaignRun)
            .where(CampaignRun.campaign_id == campaign.id)
            .order_by(CampaignRun.started_at.desc(), CampaignRun.id.desc())
            .limit(RUNS_SHOWN)
        )
    )
    runs = [
        RunView(
            run,
            total_runs - index,
            counters(run.report or {}),
            scheduled_span(run.report or {}, campaign.timezone),
        )
        for index, run in enumerate(found)
    ]
    waiting = await campaigns.scheduled_calls(session, campaign.id)
    context: dict[str, Any] = {
        "campaign": campaign,
        "steps": step_views(campaign.steps or []),
        "steps_summary": steps_summary(campaign.steps or []),
        "audience": campaign.audience or {},
        "audience_names": await _audience_names(console, campaign.audience or {}),
        "counts": counts,
        "member_total": sum(counts.values()),
        "members": members,
        "leads": leads,
        "members_shown": MEMBERS_SHOWN,
        "runs": runs,
        "total_runs": total_runs,
        "chart": runs_chart(runs) if runs else None,
        "calls": any(step.get("channel") == "voice" for step in campaign.steps or []),
        "scheduled": ScheduledView(
            waiting.count, campaigns.describe_span(waiting.first, waiting.last, campaign.timezone)
        )
        if waiting
        else None,
        "actions": allowed_actions(campaign.status),
        "can_write": console.can(Permission.OUTREACH_SEND),
        "unassigned": UNASSIGNED,
        "panel_notices": notices or [],
        **_labels(),
    }
    template = "campaigns/_detail.html" if is_htmx(request) else "campaigns/detail.html"
    return render(request, template, context, status=status)


@router.get("/{campaign_id}")
async def campaign_page(
    request: Request, console: ViewCampaigns, campaign_id: uuid.UUID
) -> Response:
    # Row-level security hides other tenants' campaigns: they are as missing as unknown ones.
    return await _detail(request, console, await campaigns.get(console.session, campaign_id))


async def _transition(
    request: Request, console: Console, campaign_id: uuid.UUID, action: str
) -> Response:
    try:
        async with console.session.begin_nested():
            campaign = await campaigns.transition(
                console.session, console.principal, campaign_id, action, now=utcnow()
            )
    except Conflict as error:
        campaign = await campaigns.get(console.session, campaign_id)
        notice = Notice("error", f"Not done: {error.detail}")
        return await _detail(request, console, campaign, notices=[notice], status=409)
    when = f"{campaign.send_time} {campaign.timezone}"
    notice = Notice("success", ACTION_NOTICES[action].format(when=when))
    return await _detail(request, console, campaign, notices=[notice])


@router.post("/{campaign_id}/activate")
async def activate_campaign(
    request: Request, console: RunCampaigns, campaign_id: uuid.UUID
) -> Response:
    return await _transition(request, console, campaign_id, "activate")


@router.post("/{campaign_id}/pause")
async def pause_campaign(
    request: Request, console: RunCampaigns, campaign_id: uuid.UUID
) -> Response:
    return await _transition(request, console, campaign_id, "pause")


@router.post("/{campaign_id}/resume")
async def resume_campaign(
    request: Request, console: RunCampaigns, campaign_id: uuid.UUID
) -> Response:
    """Also after a halt, once its cause is fixed."""
    return await _transition(request, console, campaign_id, "resume")


@router.post("/{campaign_id}/stop")
async def stop_campaign(
    request: Request, console: RunCampaigns, campaign_id: uuid.UUID
) -> Response:
    return await _transition(request, console, campaign_id, "stop")


def run_summary(report: Mapping[str, Any]) -> str:
    """ "3 joined, 3 drafted, 3 awaiting approval": what the run did, in a sentence."""
    parts = [
        f"{_count(report[key])} {words}"
        for key, words in (
            ("joined", "joined"),
            ("drafted", "drafted"),
            ("awaiting_approval", "awaiting approval"),
            ("queued", "queued"),
            ("scheduled", "calls scheduled"),
            ("deferred", "deferred"),
        )
        if _count(report.get(key))
    ]
    for series in ("blocked", "stopped"):
        if value := series_value(report, series):
            parts.append(f"{value} {series}")
    if _count(report.get("failed")):
        parts.append(f"{_count(report['failed'])} failed")
    return ", ".join(parts) if parts else "no member was due"


@router.post("/{campaign_id}/run")
async def run_campaign(request: Request, console: RunCampaigns, campaign_id: uuid.UUID) -> Response:
    """Run now, outside the daily schedule: it counts as today's run. Each due step is drafted
    for review; approved drafts go through the policy guard."""
    try:
        async with console.session.begin_nested():
            run = await campaigns.run(
                console.session,
                console.principal,
                campaign_id,
                settings=settings_of(request),
                keys=keys_of(request),
                drafter=drafter_of(request),
                trigger="manual",
                now=utcnow(),
            )
    except Conflict as error:
        campaign = await campaigns.get(console.session, campaign_id)
        notice = Notice("error", f"Not run: {error.detail}")
        return await _detail(request, console, campaign, notices=[notice], status=409)
    campaign = await campaigns.get(console.session, campaign_id)
    if run.error:
        notice = Notice(
            "error", "The run halted the campaign (the reason is below): fix it, then resume."
        )
    else:
        notice = Notice("success", f"Run finished: {run_summary(run.report or {})}.")
    return await _detail(request, console, campaign, notices=[notice])
