"""ICP scoring: the rule-set versions, a draft written as JSON and checked rule by rule, its
activation with the rescoring it starts, and each version's quality measured on CRM outcomes
(with the weights "suggest" fits on them, backtested beside the current ones).

The rescoring runs as a queue job: the page polls the job's run row until it is done, as the
imports page polls an import.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from leadrelay.console.auth import Console, ManageScoring, ViewScoring
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.jobs_models import JobRun
from leadrelay.identity.permissions import Permission
from leadrelay.scoring import icp, service
from leadrelay.scoring.models import IcpVersion, VersionStatus
from leadrelay.scoring.quality import QualityReport

router = APIRouter(prefix="/console/scoring")


RESCORE_KIND = "rescore"
MAX_RULES_TEXT = 200_000
# What a first draft starts from when no version is active yet.
SAMPLE_RULES: list[dict[str, Any]] = [
    {
        "id": "us",
        "label": "Based in the US",
        "when": [{"fact": "country", "op": "equals", "value": "US"}],
        "points": 40,
    },
    {
        "id": "leader",
        "label": "Sales leadership",
        "when": [{"fact": "title", "op": "regex", "value": r"\b(vp|head|chief)\b"}],
        "points": 40,
    },
    {
        "id": "free-mail",
        "label": "Personal address",
        "when": [{"fact": "flags", "op": "contains", "value": "free_email"}],
        "points": -30,
    },
]
OPERATOR_WORDS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "in": "is one of",
    "not_in": "is not one of",
    "range": "is between",
    "contains": "contains",
    "regex": "matches",
    "gt": "is greater than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
}
_RULE_FIELD = re.compile(r"^rules\[(\d+)\](?: \([^)]*\))?\.?(.*)$")


# --- reading rules ---------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_value_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    return str(value)


def condition_text(condition: dict[str, Any]) -> str:
    """One condition in words: "country equals US", "employees is between 20 and 500"."""
    fact, op = str(condition.get("fact", "?")), str(condition.get("op", "?"))
    value = condition.get("value")
    if op == "exists":
        return f"{fact} is {'present' if value else 'absent'}"
    if op == "range" and isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        if low is not None and high is not None:
            return f"{fact} is between {_value_text(low)} and {_value_text(high)}"
        if low is not None:
            return f"{fact} is at least {_value_text(low)}"
        if high is not None:
            return f"{fact} is at most {_value_text(high)}"
    return f"{fact} {OPERATOR_WORDS.get(op, op.replace('_', ' '))} {_value_text(value)}"


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    label: str
    conditions: list[str]
    points: int


def rule_rows(rules: list[dict[str, Any]]) -> list[RuleRow]:
    return [
        RuleRow(
            id=str(rule.get("id", "")),
            label=str(rule.get("label", "")),
            conditions=[condition_text(c) for c in rule.get("when", []) if isinstance(c, dict)],
            points=int(rule.get("points", 0)),
        )
        for rule in rules
    ]


def rules_json(rules: list[dict[str, Any]]) -> str:
    return json.dumps(rules, indent=2, ensure_ascii=False)


# --- the draft form --------------------------------------------------------------------------


@dataclass(slots=True)
class RuleCheck:
    """One rule of the submitted JSON with every reason it cannot be saved (none: fine)."""

    index: int
    rule_id: str
    label: str
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DraftForm:
    """The draft form as typed (kept for re-display) and what is wrong with it."""

    rules: str
    threshold: str
    note: str
    errors: dict[str, str] = field(default_factory=dict)
    checks: list[RuleCheck] = field(default_factory=list)
    parsed: list[Any] = field(default_factory=list)

    @property
    def rule_problems(self) -> int:
        return sum(1 for check in self.checks if check.errors)

    def add_rule_error(self, index: int, where: str, reason: str) -> None:
        if not 0 <= index < len(self.checks):
            self.errors.setdefault("rules", f"{where}: {reason}" if where else reason)
            return
        self.checks[index].errors.append(f"{where}: {reason}" if where else reason)

    def add_errors(self, errors: list[dict[str, Any]]) -> None:
        """Errors as the service reports them: {"field": "rules[0] (us).when[0]", "reason"}."""
        for error in errors:
            where, reason = str(error.get("field", "")), str(error.get("reason", ""))
            found = _RULE_FIELD.match(where)
            if found:
                self.add_rule_error(int(found.group(1)), found.group(2), reason)
            else:
                self.errors.setdefault(where or "rules", reason)


def _new_form(rules: list[dict[str, Any]], threshold: int, note: str = "") -> DraftForm:
    return DraftForm(rules_json(rules), str(threshold), note)


def _pydantic_errors(form: DraftForm, error: ValidationError) -> None:
    for item in error.errors():
        loc = list(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            where = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2:]
            )
            form.add_rule_error(loc[1], where.removeprefix("."), message)
        elif loc and loc[0] == "threshold":
            form.errors.setdefault("threshold", f"Threshold: {message}")
        else:
            form.errors.setdefault("rules", message)


def read_form(rules: str, threshold: str, note: str) -> tuple[DraftForm, icp.RuleSetBody | None]:
    """The typed form, and the rule set when its JSON and every rule's shape are valid (the
    service then checks facts, operators and values, and names each rule it refuses)."""
    form = DraftForm(rules, threshold, note)
    try:
        parsed = json.loads(rules) if rules.strip() else []
    except json.JSONDecodeError as error:
        form.errors["rules"] = (
            f"This is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        )
        return form, None
    if isinstance(parsed, dict) and isinstance(parsed.get("rules"), list):
        parsed = parsed["rules"]
    if not isinstance(parsed, list):
        form.errors["rules"] = 'The rules are a JSON list: [{"id": …, "when": […]}, …].'
        return form, None
    form.parsed = parsed
    form.checks = [
        RuleCheck(
            index,
            str(rule.get("id", "")) if isinstance(rule, dict) else "",
            str(rule.get("label", "")) if isinstance(rule, dict) else "",
        )
        for index, rule in enumerate(parsed)
    ]
    try:
        value = int(threshold.strip() or icp.DEFAULT_THRESHOLD)
    except ValueError:
        form.errors["threshold"] = "The threshold is a whole number from 0 to 100."
        return form, None
    try:
        body = icp.RuleSetBody.model_validate({"rules": parsed, "threshold": value})
    except ValidationError as error:
        _pydantic_errors(form, error)
        return form, None
    return form, body


# --- pages -----------------------------------------------------------------------------------


async def _start_form(console: Console) -> DraftForm:
    active = await service.active_version(console.session)
    if active is None:
        return _new_form(SAMPLE_RULES, icp.DEFAULT_THRESHOLD)
    return _new_form(active.rules, active.threshold)


async def _list_panel(
    request: Request,
    console: Console,
    *,
    form: DraftForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "versions": await service.list_versions(console.session),
        "can_manage": console.can(Permission.SCORING_MANAGE),
        "form": form or await _start_form(console),
        "panel_notices": notices or [],
    }
    template = "scoring/_panel.html" if is_htmx(request) else "scoring/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def scoring_page(request: Request, console: ViewScoring) -> Response:
    return await _list_panel(request, console)


@router.post("")
async def create_draft(
    request: Request,
    console: ManageScoring,
    rules: Annotated[str, Form(max_length=MAX_RULES_TEXT)] = "",
    threshold: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form, body = read_form(rules, threshold, note)
    if body is None:
        return await _list_panel(request, console, form=form, status=422)
    try:
        draft = await service.create_draft(
            console.session, console.principal, body, now=utcnow(), note=note.strip()
        )
    except service.InvalidRules as error:
        form.add_errors(error.errors)
        return await _list_panel(request, console, form=form, status=422)
    if not is_htmx(request):
        return RedirectResponse(f"/console/scoring/{draft.id}", status_code=303)
    notice = Notice(
        "success",
        f"Draft {draft.number} saved with {len(body.rules)} rules. Nothing scores with it "
        "until it is activated.",
        href=f"/console/scoring/{draft.id}",
        link=f"Open draft {draft.number}",
    )
    return await _list_panel(request, console, notices=[notice])


async def _latest_run(console: Console, version: IcpVersion) -> JobRun | None:
    return await console.session.scalar(
        select(JobRun)
        .where(JobRun.kind == RESCORE_KIND, JobRun.data["version_id"].astext == str(version.id))
        .order_by(JobRun.started_at.desc(), JobRun.id.desc())
        .limit(1)
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def quality_charts(report: QualityReport) -> dict[str, Any]:
    """Chart.js configurations (plain JSON: the page has no inline script) for lift by decile
    and calibration."""
    axis = {"grid": {"color": "#e3e8f0"}, "ticks": {"color": "#69758a"}}
    lift = {
        "type": "bar",
        "data": {
            "labels": [f"D{row.decile}" for row in report.deciles],
            "datasets": [
                {
                    "label": "Lift",
                    "data": [round(row.lift, 3) for row in report.deciles],
                    "backgroundColor": "#4f46e5",
                    "borderRadius": 4,
                }
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": False}},
            "scales": {
                "x": {**axis, "title": {"display": True, "text": "Decile (1 = highest scores)"}},
                "y": {
                    **axis,
                    "beginAtZero": True,
                    "title": {"display": True, "text": "Win rate / overall win rate"},
                },
            },
        },
    }
    calibration = {
        "type": "line",
        "data": {
            "labels": [f"{row.bin_low}–{row.bin_high}" for row in report.calibration],
            "datasets": [
                {
                    "label": "Predicted (score / 100)",
                    "data": [round(row.predicted, 3) for row in report.calibration],
                    "borderColor": "#69758a",
                    "backgroundColor": "#69758a",
                    "borderDash": [6, 4],
                    "pointRadius": 2,
                },
                {
                    "label": "Observed win rate",
                    "data": [
                        None if row.observed is None else round(row.observed, 3)
                        for row in report.calibration
                    ],
                    "borderColor": "#0f8a5f",
                    "backgroundColor": "#0f8a5f",
                    "pointRadius": 4,
                    "spanGaps": True,
                },
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "scales": {
                "x": {**axis, "title": {"display": True, "text": "Score"}},
                "y": {**axis, "min": 0, "max": 1, "title": {"display": True, "text": "Share won"}},
            },
        },
    }
    return {"lift": lift, "calibration": calibration}


@dataclass(frozen=True, slots=True)
class BacktestRow:
    metric: str
    current: str
    suggested: str
    better: bool


@dataclass(frozen=True, slots=True)
class PointsRow:
    rule_id: str
    label: str
    current: int
    suggested: int
    matched: int
    positive_rate: str


def suggestion_view(version: IcpVersion) -> dict[str, Any] | None:
    """The backtest (current against suggested points, on held-out leads) and each rule's
    points, from the suggestion a "suggest weights" draft keeps."""
    suggestion = version.suggestion
    if not suggestion:
        return None
    current = suggestion.get("backtest_current") or {}
    suggested = suggestion.get("backtest_suggested") or {}
    metrics = []
    for key, name in (("auc", "AUC"), ("precision", "Precision"), ("recall", "Recall")):
        before, after = current.get(key), suggested.get(key)
        shown = (
            (
                f"{before:.3f}" if before is not None else "—",
                f"{after:.3f}" if after is not None else "—",
            )
            if key == "auc"
            else (_percent(before), _percent(after))
        )
        better = before is not None and after is not None and after > before
        metrics.append(BacktestRow(name, shown[0], shown[1], better))
    labels = {str(rule.get("id")): str(rule.get("label", "")) for rule in version.rules}
    points = [
        PointsRow(
            rule_id=str(rule.get("rule_id", "")),
            label=labels.get(str(rule.get("rule_id", "")), ""),
            current=int(rule.get("current_points", 0)),
            suggested=int(rule.get("suggested_points", 0)),
            matched=int(rule.get("matched", 0)),
            positive_rate=_percent(rule.get("positive_rate")),
        )
        for rule in suggestion.get("rules", [])
    ]
    return {
        "metrics": metrics,
        "points": points,
        "train_size": suggestion.get("train_size"),
        "test_size": suggestion.get("test_size"),
        "notes": list(suggestion.get("notes") or []),
    }


async def _version_panel(
    request: Request,
    console: Console,
    version: IcpVersion,
    *,
    form: DraftForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    report = await service.quality_of(console.session, version)
    context: dict[str, Any] = {
        "version": version,
        "rules": rule_rows(version.rules),
        "run": await _latest_run(console, version),
        "can_manage": console.can(Permission.SCORING_MANAGE),
        "form": form or _new_form(version.rules, version.threshold, version.note),
        "report": report,
        "metrics": [
            ("AUC", "—" if report.auc is None else f"{report.auc:.3f}", "Ranking quality"),
            ("Precision", _percent(report.precision), f"Won among scores ≥ {version.threshold}"),
            ("Recall", _percent(report.recall), "Won leads that qualified"),
            ("F1", "—" if report.f1 is None else f"{report.f1:.3f}", "Precision and recall"),
        ],
        "charts": quality_charts(report),
        "suggestion": suggestion_view(version),
        "panel_notices": notices or [],
    }
    template = "scoring/_version.html" if is_htmx(request) else "scoring/detail.html"
    return render(request, template, context, status=status)


@router.get("/{version_id}")
async def version_page(request: Request, console: ViewScoring, version_id: uuid.UUID) -> Response:
    version = await service.get_version(console.session, version_id)
    return await _version_panel(request, console, version)


@router.post("/{version_id}")
async def update_draft(
    request: Request,
    console: ManageScoring,
    version_id: uuid.UUID,
    rules: Annotated[str, Form(max_length=MAX_RULES_TEXT)] = "",
    threshold: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    version = await service.get_version(console.session, version_id)
    if version.status != VersionStatus.DRAFT:
        raise ConsoleProblem(409, "Not possible", "Only a draft can be changed.")
    form, body = read_form(rules, threshold, note)
    if body is None:
        return await _version_panel(request, console, version, form=form, status=422)
    try:
        version = await service.update_draft(
            console.session, console.principal, version_id, body, now=utcnow(), note=note.strip()
        )
    except service.InvalidRules as error:
        form.add_errors(error.errors)
        return await _version_panel(request, console, version, form=form, status=422)
    notice = Notice("success", f"Draft {version.number} saved with {len(body.rules)} rules.")
    return await _version_panel(request, console, version, notices=[notice])


@router.post("/{version_id}/activate")
async def activate(request: Request, console: ManageScoring, version_id: uuid.UUID) -> Response:
    version, _ = await service.activate(
        console.session, console.principal, version_id, now=utcnow()
    )
    notice = Notice(
        "success",
        f"Version {version.number} is active: new leads score with it, and every open lead is "
        "being rescored.",
    )
    return await _version_panel(request, console, version, notices=[notice], status=202)


@router.get("/{version_id}/runs/{run_id}")
async def run_progress(
    request: Request, console: ViewScoring, version_id: uuid.UUID, run_id: uuid.UUID
) -> Response:
    run = await console.session.get(JobRun, run_id)
    if run is None or run.kind != RESCORE_KIND or run.data.get("version_id") != str(version_id):
        raise ConsoleProblem(404, "Not found", "This rescoring run does not exist.")
    version = await service.get_version(console.session, version_id)
    return render(request, "scoring/_run.html", {"run": run, "version": version})


@router.post("/{version_id}/suggest")
async def suggest(request: Request, console: ManageScoring, version_id: uuid.UUID) -> Response:
    version = await service.get_version(console.session, version_id)
    try:
        draft = await service.suggest(console.session, console.principal, version, now=utcnow())
    except ValueError as error:  # not enough outcomes, or only one of won and lost
        notice = Notice("error", f"No weights to suggest yet: {error}.")
        return await _version_panel(request, console, version, notices=[notice], status=422)
    if not is_htmx(request):
        return RedirectResponse(f"/console/scoring/{draft.id}", status_code=303)
    notice = Notice(
        "success",
        f"Suggested points saved as draft {draft.number}, with the backtest beside the current "
        "points. Nothing changes until it is activated.",
        href=f"/console/scoring/{draft.id}",
        link=f"Open draft {draft.number}",
    )
    return await _version_panel(request, console, version, notices=[notice])
