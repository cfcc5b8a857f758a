"""Outreach in the console: the message history (filters, the dry-run outbox, what the policy
guard blocked and why), one message with its text as recorded and the guard's trace, today's
counts, and the tenant's outreach policy (dry-run, daily caps, the domain throttle, cooldown,
and per-country rules: a country's own daily call cap, call hours and SMS/WhatsApp hours).

The rules are the service's (`outreach.service`): leaving dry-run, raising a limit above its
default, or giving a country hours wider than the default, needs `service.LIVE_CONFIRMATION`
typed out, and the service's refusal is shown at the confirmation field. Only the values that
changed are handed over, so a cap raised (and confirmed) once does not ask for the
confirmation again when the cooldown changes; the table goes whole, and the service asks only
about hours that are not stored as they are.

The per-country rules are a table of rows: "Add a country" and each row's "Remove" post the
form back to be shown again with a row more or less, saving nothing (so the form works without
script too); saving checks each row and shows its trouble at the field (a code that is no
country, hours that end before they start, a cap below zero), then hands the whole table to the
same `service.set_outreach_policy` the API calls, audited with the rest.

Recipients' addresses are not shown: the list names the lead, the detail its domain, as the
API does (`MessageOut` has no recipient).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from leadrelay.capture.models import Lead
from leadrelay.capture.normalize import normalize_country
from leadrelay.compliance import domains
from leadrelay.console.auth import Console, SetOutreachPolicy, ViewOutreach, settings_of
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.drafting.compose import UNSUBSCRIBE_PLACEHOLDER
from leadrelay.drafting.evidence import Channel
from leadrelay.identity.models import Tenant
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import service
from leadrelay.outreach.limits import CALL_WINDOW, MESSAGE_WINDOW, WindowKind
from leadrelay.outreach.local_time import DAY_NAMES
from leadrelay.outreach.models import Message, MessageStatus
from leadrelay.outreach.policy import CHECK_ORDER, Check, StepOutcome

router = APIRouter(prefix="/console/outreach")

PAGE_SIZE = 50
CHANNELS = tuple(channel.value for channel in Channel)
CHANNEL_LABELS = {"email": "E-mail", "sms": "SMS", "whatsapp": "WhatsApp", "voice": "Voice"}
STATUS_TONES = {
    MessageStatus.QUEUED.value: "info",
    MessageStatus.SENDING.value: "info",
    MessageStatus.SENT.value: "good",
    MessageStatus.DEFERRED.value: "warn",
    MessageStatus.BLOCKED.value: "bad",
    MessageStatus.FAILED.value: "bad",
}
CHECK_LABELS = {
    Check.CONSENT.value: "Consent",
    Check.SUPPRESSION.value: "Suppression list",
    Check.DNC.value: "Do-not-call lists",
    Check.APPROVAL.value: "Approval",
    Check.DAILY_CAP.value: "Daily cap",
    Check.DOMAIN_THROTTLE.value: "Domain throttle",
    Check.COUNTRY_CALL_CAP.value: "Calls per country",
    Check.COOLDOWN.value: "Cooldown",
    Check.SCHEDULE.value: "Scheduled time",
    Check.LOCAL_TIME.value: "Recipient's local time",
}
OUTCOME_LABELS = {
    StepOutcome.PASSED.value: ("good", "passed"),
    StepOutcome.BLOCKED.value: ("bad", "blocked"),
    StepOutcome.SKIPPED.value: ("muted", "skipped"),
}
DRY_RUN_ONLY = "only"
# Limits of the policy form, as the API's `OutreachPolicyIn` has them.
MAX_CAP = 1_000_000
MAX_DOMAIN_CAP = 100_000
MAX_COOLDOWN_DAYS = 3650
MAX_NUMBER_TEXT = 20
MAX_CONFIRMATION = 100
MODE_DRY_RUN = "dry_run"
MODE_LIVE = "live"
# The per-country table: at most this many rows are read; what a cell may hold.
MAX_COUNTRY_ROWS = 100
MAX_CELL = 20
ADD_ROW = "add"
REMOVE_ROW = "remove-"
_COUNTRY_FIELD = re.compile(
    r"country-(\d{1,3})-(code|cap|start|end|days|message_start|message_end|message_days)"
)
_DAY_FIELDS = frozenset({"days", "message_days"})
_HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_DAY_VALUES = frozenset(str(day) for day in range(7))  # Monday (0) to Sunday (6)


# --- the message list ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessagesQuery:
    """The filter form as typed (kept for re-display); unknown values are ignored with a
    notice."""

    status: str = ""
    channel: str = ""
    dry_run: str = ""
    blocked_by: str = ""

    def conditions(self) -> tuple[list[Any], list[Notice]]:
        where: list[Any] = []
        notices: list[Notice] = []
        if self.status:
            if self.status in STATUS_TONES:
                where.append(Message.status == self.status)
            else:
                notices.append(Notice("warning", f"Ignored the unknown status {self.status!r}."))
        if self.channel:
            if self.channel in CHANNELS:
                where.append(Message.channel == self.channel)
            else:
                notices.append(Notice("warning", f"Ignored the unknown channel {self.channel!r}."))
        if self.dry_run == DRY_RUN_ONLY:
            where.append(Message.dry_run.is_(True))
        elif self.dry_run:
            notices.append(Notice("warning", "Ignored the dry-run filter: it is on or off."))
        if self.blocked_by:
            if self.blocked_by in CHECK_LABELS:
                where.append(Message.blocked_by == self.blocked_by)
            else:
                notices.append(Notice("warning", f"Ignored the unknown check {self.blocked_by!r}."))
        return where, notices

    @property
    def params(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


@dataclass(frozen=True, slots=True)
class SummaryCount:
    key: str
    label: str
    value: int
    tone: str
    hint: str


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


def day_start(now: datetime, zone: str) -> datetime:
    """Midnight today in the tenant's zone: where caps count from."""
    local = now.astimezone(_zone(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def _summary(session: AsyncSession, since: datetime) -> list[SummaryCount]:
    """Today's messages by status: sent counts by when they left, the others by when they were
    decided (a message queued yesterday and sent today counts as sent today)."""
    counts = {
        str(status): int(count)
        for status, count in await session.execute(
            select(Message.status, func.count())
            .where(Message.created_at >= since, Message.status != MessageStatus.SENT)
            .group_by(Message.status)
        )
    }
    sent = await session.scalar(
        select(func.count()).where(Message.status == MessageStatus.SENT, Message.sent_at >= since)
    )
    waiting = counts.get(MessageStatus.QUEUED.value, 0) + counts.get(MessageStatus.SENDING.value, 0)
    return [
        SummaryCount("queued", "Queued", waiting, "info", "passed the guard, waiting to go"),
        SummaryCount("sent", "Sent", int(sent or 0), "good", "accepted, or recorded in dry-run"),
        SummaryCount(
            "deferred",
            "Deferred",
            counts.get(MessageStatus.DEFERRED.value, 0),
            "warn",
            "a cap, a window or a call's scheduled time: decided again then",
        ),
        SummaryCount(
            "blocked",
            "Blocked",
            counts.get(MessageStatus.BLOCKED.value, 0),
            "bad",
            "refused by the policy guard",
        ),
        SummaryCount(
            "failed",
            "Failed",
            counts.get(MessageStatus.FAILED.value, 0),
            "bad",
            "the channel refused or gave up",
        ),
    ]


async def _leads(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Lead]:
    if not ids:
        return {}
    return {lead.id: lead for lead in await session.scalars(select(Lead).where(Lead.id.in_(ids)))}


async def _messages(
    session: AsyncSession, where: list[Any], after: uuid.UUID | None
) -> tuple[list[Message], uuid.UUID | None]:
    """Newest first, a page at a time: `after` is the last message of the previous page."""
    query = select(Message).where(*where)
    if after is not None:
        anchor = await session.get(Message, after)
        if anchor is not None:
            query = query.where(
                or_(
                    Message.created_at < anchor.created_at,
                    and_(Message.created_at == anchor.created_at, Message.id < anchor.id),
                )
            )
    found = list(
        await session.scalars(
            query.order_by(Message.created_at.desc(), Message.id.desc()).limit(PAGE_SIZE + 1)
        )
    )
    rows = found[:PAGE_SIZE]
    return rows, rows[-1].id if len(found) > PAGE_SIZE else None


def _htmx_target(request: Request) -> str | None:
    """The element an htmx request will swap (None for a page load or a history restore)."""
    if not is_htmx(request) or request.headers.get("hx-history-restore-request"):
        return None
    return request.headers.get("hx-target")


def _labels() -> dict[str, Any]:
    return {
        "status_tones": STATUS_TONES,
        "check_labels": CHECK_LABELS,
        "channel_labels": CHANNEL_LABELS,
    }


@router.get("")
async def outreach_page(
    request: Request,
    console: ViewOutreach,
    status: Annotated[str, Query(max_length=20)] = "",
    channel: Annotated[str, Query(max_length=20)] = "",
    dry_run: Annotated[str, Query(max_length=10)] = "",
    blocked_by: Annotated[str, Query(max_length=40)] = "",
    after: uuid.UUID | None = None,
) -> Response:
    session = console.session
    query = MessagesQuery(status.strip(), channel.strip(), dry_run.strip(), blocked_by.strip())
    where, notices = query.conditions()
    messages, next_after = await _messages(session, where, after)
    context: dict[str, Any] = {
        "messages": messages,
        "next_after": next_after,
        "leads": await _leads(session, {message.lead_id for message in messages}),
        "query": query,
        "filter_notices": notices,
        "statuses": list(STATUS_TONES),
        "channels": CHANNELS,
        "checks": [check.value for check in CHECK_ORDER],
        "dry_run_only": DRY_RUN_ONLY,
        **_labels(),
    }
    target = _htmx_target(request)
    if target == "messages-more":
        return render(request, "outreach/_rows.html", context)
    if target == "messages-list":
        return render(request, "outreach/_list.html", context)
    tenant = await get_tenant(session, console.principal.tenant_id)
    view = service.outreach_policy(tenant, settings_of(request))
    since = day_start(utcnow(), view.timezone)
    context.update({"policy": view, "summary": await _summary(session, since), "since": since})
    return render(request, "outreach/page.html", context)


# --- one message ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    placeholder: bool = False


def text_parts(text: str | None) -> list[TextPart]:
    """The text as recorded, with the unsubscribe placeholder set apart (the channel replaces
    it at hand-over with the message's own signed link)."""
    if not text:
        return []
    parts: list[TextPart] = []
    for index, piece in enumerate(text.split(UNSUBSCRIBE_PLACEHOLDER)):
        if index:
            parts.append(TextPart(UNSUBSCRIBE_PLACEHOLDER, placeholder=True))
        if piece:
            parts.append(TextPart(piece))
    return parts


@dataclass(frozen=True, slots=True)
class TraceRow:
    check: str
    label: str
    outcome: str  # pass | block | skip | not_reached | handover
    tone: str
    outcome_label: str
    detail: str


def trace_rows(message: Message) -> list[TraceRow]:
    """Every check in the guard's order: what it answered, and those after a block as not
    reached. A block at hand-over (the approval revoked or expired after queueing) is not in the
    stored trace: it is added as its own row."""
    rows: list[TraceRow] = []
    seen: set[str] = set()
    blocked = False
    steps: list[Any] = list(message.policy_trace or [])  # JSON: trust no shape
    for step in steps:
        if not isinstance(step, dict):
            continue
        check = str(step.get("check") or "?")
        outcome = str(step.get("outcome") or "")
        tone, label = OUTCOME_LABELS.get(outcome, ("muted", outcome or "unknown"))
        seen.add(check)
        blocked |= outcome == StepOutcome.BLOCKED.value
        rows.append(
            TraceRow(
                check,
                CHECK_LABELS.get(check, check),
                outcome,
                tone,
                label,
                str(step.get("detail") or ""),
            )
        )
    if steps:
        for check in CHECK_ORDER:
            if check.value not in seen:
                rows.append(
                    TraceRow(
                        check.value,
                        CHECK_LABELS[check.value],
                        "not_reached",
                        "muted",
                        "not reached",
                        "the guard stops at the first block",
                    )
                )
    if message.status == MessageStatus.BLOCKED and message.blocked_by and not blocked:
        rows.append(
            TraceRow(
                message.blocked_by,
                CHECK_LABELS.get(message.blocked_by, message.blocked_by) + " (at hand-over)",
                StepOutcome.BLOCKED.value,
                "bad",
                "blocked",
                message.block_reason or "",
            )
        )
    return rows


@router.get("/messages/{message_id}")
async def message_page(request: Request, console: ViewOutreach, message_id: uuid.UUID) -> Response:
    session = console.session
    # Row-level security hides other tenants' messages: they are as missing as unknown ones.
    message = await session.get(Message, message_id)
    if message is None:
        raise ConsoleProblem(404, "Not found", "This message does not exist.")
    context: dict[str, Any] = {
        "message": message,
        "lead": await session.get(Lead, message.lead_id),
        "subject_parts": text_parts(message.subject),
        "body_parts": text_parts(message.body),
        "has_placeholder": UNSUBSCRIBE_PLACEHOLDER in (message.body or ""),
        "placeholder": UNSUBSCRIBE_PLACEHOLDER,
        "trace": trace_rows(message),
        "can_read_drafts": console.can(Permission.DRAFTS_READ),
        **_labels(),
    }
    return render(request, "outreach/message.html", context)


# --- the policy -----------------------------------------------------------------------------


@dataclass(slots=True)
class CountryRow:
    """One row of the per-country table as typed: the country, its own daily call cap (blank:
    none of its own), its own call hours and its own SMS/WhatsApp hours (blank: the default
    window, whose days a new row starts with)."""

    code: str = ""
    cap: str = ""
    start: str = ""
    end: str = ""
    days: frozenset[int] = CALL_WINDOW.default.days
    message_start: str = ""
    message_end: str = ""
    message_days: frozenset[int] = MESSAGE_WINDOW.default.days

    @property
    def is_blank(self) -> bool:
        """Nothing typed: a row added and left empty, skipped rather than refused."""
        typed = (self.code, self.cap, self.start, self.end, self.message_start, self.message_end)
        return not any(typed)


@dataclass(frozen=True, slots=True)
class CountryRules:
    """The table as the service takes it: the three maps, each replacing the stored one."""

    caps: dict[str, int]
    call_windows: dict[str, dict[str, Any]]
    message_windows: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class PolicyForm:
    """The policy form as typed, and its field errors (a country row's are named
    `country-<row>-<field>`)."""

    mode: str
    caps: dict[str, str]
    domain_hourly_cap: str
    cooldown_days: str
    confirmation: str = ""
    countries: list[CountryRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, view: service.OutreachPolicy) -> PolicyForm:
        return cls(
            mode=MODE_DRY_RUN if view.tenant_dry_run else MODE_LIVE,
            caps={name: str(view.daily_caps.get(name, 0)) for name in CHANNELS},
            domain_hourly_cap=str(view.domain_hourly_cap),
            cooldown_days=str(view.cooldown_days),
            countries=country_rows_of(stored_rules(view)),
        )


def stored_rules(view: service.OutreachPolicy) -> CountryRules:
    """The stored per-country rules, with each window's days spelled out (the default
    window's when the rule leaves them out, as the guard reads it)."""
    return CountryRules(
        dict(view.country_call_caps),
        _spelled_out(CALL_WINDOW, view),
        _spelled_out(MESSAGE_WINDOW, view),
    )


def _spelled_out(kind: WindowKind, view: service.OutreachPolicy) -> dict[str, dict[str, Any]]:
    windows: dict[str, dict[str, Any]] = {}
    for code, rule in view.country_windows(kind).items():
        days = rule.get("days")
        windows[code] = {
            "start": str(rule.get("start", "")),
            "end": str(rule.get("end", "")),
            "days": sorted({int(d) for d in days} if days is not None else kind.default.days),
        }
    return windows


def country_rows_of(rules: CountryRules) -> list[CountryRow]:
    """One row per country with a rule, in code order."""
    rows: list[CountryRow] = []
    for code in sorted(set(rules.caps) | set(rules.call_windows) | set(rules.message_windows)):
        calls = rules.call_windows.get(code)
        messages = rules.message_windows.get(code)
        cap = rules.caps.get(code)
        rows.append(
            CountryRow(
                code=code,
                cap="" if cap is None else str(cap),
                start=calls["start"] if calls else "",
                end=calls["end"] if calls else "",
                days=frozenset(calls["days"]) if calls else CALL_WINDOW.default.days,
                message_start=messages["start"] if messages else "",
                message_end=messages["end"] if messages else "",
                message_days=(
                    frozenset(messages["days"]) if messages else MESSAGE_WINDOW.default.days
                ),
            )
        )
    return rows


def typed_country_rows(form: FormData) -> list[CountryRow]:
    """The table's rows as posted (`country-<row>-<field>`), in row order. A row is the one
    its code cell names; an unchecked day is simply not posted."""
    cells: dict[int, dict[str, str]] = {}
    days: dict[tuple[int, str], set[int]] = {}
    for key, value in form.multi_items():
        found = _COUNTRY_FIELD.fullmatch(key)
        if found is None or not isinstance(value, str):
            continue
        row, name = int(found.group(1)), found.group(2)
        if row >= MAX_COUNTRY_ROWS:
            continue
        if name in _DAY_FIELDS:
            if value.strip() in _DAY_VALUES:
                days.setdefault((row, name), set()).add(int(value))
        else:
            cells.setdefault(row, {})[name] = value.strip()[:MAX_CELL]
    return [
        CountryRow(
            code=cells[row].get("code", "").upper(),
            cap=cells[row].get("cap", ""),
            start=cells[row].get("start", ""),
            end=cells[row].get("end", ""),
            days=frozenset(days.get((row, "days"), ())),
            message_start=cells[row].get("message_start", ""),
            message_end=cells[row].get("message_end", ""),
            message_days=frozenset(days.get((row, "message_days"), ())),
        )
        for row in sorted(cells)
        if "code" in cells[row]
    ]


def read_country_rules(rows: Sequence[CountryRow], errors: dict[str, str]) -> CountryRules:
    """The rules the rows describe; what is wrong with a row goes into `errors` at its field."""
    rules = CountryRules({}, {}, {})
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if row.is_blank:
            continue
        at = f"country-{index}-"
        code = _check_country(row.code, seen, errors, f"{at}code")
        cap = _check_call_cap(row.cap, errors, f"{at}cap")
        calls = _check_hours(row.start, row.end, row.days, errors, at)
        messages = _check_hours(
            row.message_start, row.message_end, row.message_days, errors, f"{at}message_"
        )
        if not (row.cap or row.start or row.end or row.message_start or row.message_end):
            errors.setdefault(
                f"{at}cap",
                "Give the country a daily cap, call hours or message hours, or remove the row.",
            )
        if code is None:
            continue
        seen.add(code)
        if cap is not None:
            rules.caps[code] = cap
        if calls is not None:
            rules.call_windows[code] = calls
        if messages is not None:
            rules.message_windows[code] = messages
    return rules


def _check_country(typed: str, seen: set[str], errors: dict[str, str], at: str) -> str | None:
    if not typed:
        errors[at] = "Enter the country's two-letter ISO 3166 code, such as FR."
        return None
    known = normalize_country(typed)
    if len(typed) != 2 or known != typed:
        hint = f" Did you mean {known}?" if known else ""
        errors[at] = f"{typed} is not an ISO 3166 alpha-2 country code.{hint}"
        return None
    if typed in seen:
        errors[at] = f"{typed} has a row already: one row per country."
        return None
    return typed


def _check_call_cap(typed: str, errors: dict[str, str], at: str) -> int | None:
    if not typed:
        return None
    cap = _whole(typed, MAX_CAP)
    if cap is None:
        errors[at] = (
            f"A whole number from 0 to {MAX_CAP:,} (0 stops calls there), or blank for no cap."
        )
    return cap


def _check_hours(
    start: str, end: str, days: frozenset[int], errors: dict[str, str], at: str
) -> dict[str, Any] | None:
    """A row's call or message window as stored ({"start", "end", "days"}), or None: none
    typed (the default window applies) or a mistake (in `errors`, at `<at>start`, `<at>end`
    or `<at>days`)."""
    if not start and not end:
        return None
    for name, typed, other in (("start", start, "end"), ("end", end, "start")):
        if not typed:
            errors[f"{at}{name}"] = f"Give the {name} too, or clear the {other}."
        elif not (_HOURS.fullmatch(typed) or (name == "end" and typed == "24:00")):
            errors[f"{at}{name}"] = "A time as HH:MM, such as 09:30."
    if f"{at}start" in errors or f"{at}end" in errors:
        return None
    if end != "24:00" and end <= start:
        errors[f"{at}end"] = f"Ends before it starts: choose a time after {start} (or 24:00)."
        return None
    if not days:
        errors[f"{at}days"] = "Choose at least one day."
        return None
    return {"start": start, "end": end, "days": sorted(days)}


def edit_rows(rows: list[CountryRow], action: str) -> Notice | None:
    """Add a blank row or remove one, as the table's buttons ask; nothing is saved."""
    if action == ADD_ROW:
        if len(rows) >= MAX_COUNTRY_ROWS:
            return Notice("error", f"At most {MAX_COUNTRY_ROWS} countries.")
        rows.append(CountryRow())
        return Notice("info", "Row added: fill it in, then save the policy.")
    index = action.removeprefix(REMOVE_ROW)
    if action.startswith(REMOVE_ROW) and index.isdigit() and int(index) < len(rows):
        removed = rows.pop(int(index))
        what = f"The row for {removed.code}" if removed.code else "The row"
        return Notice("info", f"{what} is removed from the form: save the policy to apply it.")
    return None


def _country_field(name: str, rows: Sequence[CountryRow]) -> str:
    """The form field a service error names: `country_call_caps.FR` is FR's cap cell."""
    kind, _, code = name.partition(".")
    cell = {
        "country_call_caps": "cap",
        CALL_WINDOW.field: "start",
        MESSAGE_WINDOW.field: "message_start",
    }.get(kind)
    if cell is None:
        return name
    for index, row in enumerate(rows):
        if row.code == code.upper():
            return f"country-{index}-{cell}"
    return name


def _whole(text: str, highest: int) -> int | None:
    """A typed whole number from 0 to `highest` ("10.0" is 10), else None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not value.is_integer() or not 0 <= value <= highest:
        return None
    return int(value)


def _defaults(request: Request) -> service.OutreachPolicy:
    """What a tenant that never changed its policy has: a raise above these is confirmed."""
    return service.outreach_policy(Tenant(settings={}), settings_of(request))


async def _policy_page(
    request: Request,
    console: Console,
    *,
    form: PolicyForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    view = service.outreach_policy(tenant, settings_of(request))
    context: dict[str, Any] = {
        "policy": view,
        "defaults": _defaults(request),
        "form": form or PolicyForm.of(view),
        "channels": CHANNELS,
        "channel_labels": CHANNEL_LABELS,
        "can_manage": console.can(Permission.OUTREACH_POLICY),
        "confirmation_words": service.LIVE_CONFIRMATION,
        "mode_dry_run": MODE_DRY_RUN,
        "mode_live": MODE_LIVE,
        "limits": {"cap": MAX_CAP, "domain": MAX_DOMAIN_CAP, "cooldown": MAX_COOLDOWN_DAYS},
        "country_rows": country_rows_of(stored_rules(view)),
        "day_names": [name[:3] for name in DAY_NAMES],
        "call_default": CALL_WINDOW.default,
        "message_default": MESSAGE_WINDOW.default,
        "add_row": ADD_ROW,
        "remove_row": REMOVE_ROW,
        "policy_notices": notices or [],
        # SPF, DKIM, DMARC of the sending domain, beside the switch that lets mail leave.
        "domains": await domains.check_sending_domains(tenant, settings_of(request), now=utcnow()),
    }
    template = "outreach/_policy.html" if is_htmx(request) else "outreach/policy.html"
    return render(request, template, context, status=status)


@router.get("/policy")
async def policy_page(request: Request, console: ViewOutreach) -> Response:
    return await _policy_page(request, console)


NumberField = Annotated[str, Form(max_length=MAX_NUMBER_TEXT)]


@router.post("/policy")
async def save_policy(
    request: Request,
    console: SetOutreachPolicy,
    mode: Annotated[str, Form(max_length=20)] = "",
    cap_email: NumberField = "",
    cap_sms: NumberField = "",
    cap_whatsapp: NumberField = "",
    cap_voice: NumberField = "",
    domain_hourly_cap: NumberField = "",
    cooldown_days: NumberField = "",
    confirmation: Annotated[str, Form(max_length=MAX_CONFIRMATION)] = "",
    accept_domain_risk: Annotated[str, Form(max_length=10)] = "",
    rows: Annotated[str, Form(max_length=MAX_CELL)] = "",
    countries_shown: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Hand the values that changed to `service.set_outreach_policy` (audited there, with
    before and after); its refusal is shown at the confirmation field. `rows` is the table's
    add or remove button: the form comes back with the row added or removed, unsaved. The
    table replaces the stored rules only when the form showed it (`countries_shown`): a post
    without it (an older page, a hand-made request) leaves them as they are."""
    typed_caps = {"email": cap_email, "sms": cap_sms, "whatsapp": cap_whatsapp, "voice": cap_voice}
    form = PolicyForm(
        mode,
        {name: value.strip() for name, value in typed_caps.items()},
        domain_hourly_cap.strip(),
        cooldown_days.strip(),
        confirmation,
        typed_country_rows(await request.form()),
    )
    if rows:
        edited = edit_rows(form.countries, rows)
        return await _policy_page(request, console, form=form, notices=[edited] if edited else [])
    countries = read_country_rules(form.countries, form.errors)
    caps: dict[str, int] = {}
    for name, text in form.caps.items():
        value = _whole(text, MAX_CAP)
        if value is None:
            form.errors[f"cap_{name}"] = f"A whole number from 0 to {MAX_CAP:,}."
        else:
            caps[name] = value
    domain = _whole(form.domain_hourly_cap, MAX_DOMAIN_CAP)
    if domain is None:
        form.errors["domain_hourly_cap"] = f"A whole number from 0 to {MAX_DOMAIN_CAP:,}."
    cooldown = _whole(form.cooldown_days, MAX_COOLDOWN_DAYS)
    if cooldown is None:
        form.errors["cooldown_days"] = f"A whole number of days from 0 to {MAX_COOLDOWN_DAYS}."
    if mode not in (MODE_DRY_RUN, MODE_LIVE):
        form.errors["mode"] = "Choose dry-run or live."
    if form.errors:
        notice = Notice("error", "Not saved: check the marked fields.")
        return await _policy_page(request, console, form=form, notices=[notice], status=422)

    settings = settings_of(request)
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    before = service.outreach_policy(tenant, settings)
    wants_dry_run = mode == MODE_DRY_RUN
    changed_caps = {name: v for name, v in caps.items() if v != before.daily_caps.get(name)}
    dry_run = wants_dry_run if wants_dry_run != before.tenant_dry_run else None
    domain = domain if domain != before.domain_hourly_cap else None
    cooldown = cooldown if cooldown != before.cooldown_days else None
    new_rules = countries if countries_shown and countries != stored_rules(before) else None
    unchanged = dry_run is None and not changed_caps and domain is None and cooldown is None
    if unchanged and new_rules is None:
        form.confirmation = ""
        notice = Notice("info", "Nothing changed.")
        return await _policy_page(request, console, form=form, notices=[notice])
    try:
        async with console.session.begin_nested():
            after = await service.set_outreach_policy(
                console.session,
                console.principal,
                settings,
                dry_run=dry_run,
                daily_caps=changed_caps or None,
                domain_hourly_cap=domain,
                cooldown_days=cooldown,
                confirmation=confirmation,
                now=utcnow(),
                country_call_caps=new_rules.caps if new_rules else None,
                country_call_windows=new_rules.call_windows if new_rules else None,
                country_message_windows=new_rules.message_windows if new_rules else None,
                accept_domain_risk=bool(accept_domain_risk),
            )
    except ValidationFailed as error:
        for item in error.errors:
            name = str(item.get("field") or "form")
            name = "cap_" + name.removeprefix("daily_caps.") if name.startswith("daily_") else name
            name = "mode" if name == "dry_run" else name
            name = _country_field(name, form.countries) if name.startswith("country_") else name
            form.errors.setdefault(name, str(item.get("reason") or error.detail))
        if "confirmation" in form.errors:
            form.errors["confirmation"] = (
                f"{error.detail} Type exactly: {service.LIVE_CONFIRMATION}"
            )
        notice = Notice("error", f"Not saved: {error.detail}")
        return await _policy_page(request, console, form=form, notices=[notice], status=422)
    notices = [Notice("success", "Outreach policy saved; the change is in the audit trail.")]
    if dry_run is False and after.forced_by_settings:
        notices.append(
            Notice(
                "warning",
                "This workspace now allows live sending, but the server's LEADRELAY_DRY_RUN "
                "setting still forces dry-run: nothing leaves until an operator turns it off.",
            )
        )
    elif dry_run is False:
        notices.append(Notice("warning", "Live: approved messages are now sent for real."))
    return await _policy_page(request, console, notices=notices)
