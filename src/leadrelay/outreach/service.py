"""Sending: an approved draft becomes a message, the policy guard decides, a channel delivers.

Every path that sends goes through `queueing.queue_drafts` (a chunk of drafts; `queue_draft`
here is a chunk of one) and, at hand-over time, `delivery` — so no side path can skip the
do-not-contact checks. The guard's facts are read and the messages counted under a per-tenant,
per-channel transaction lock (`counting`), so caps and throttles hold across any number of
worker processes: PostgreSQL is the only place the counting happens.

A message is persisted before the provider call, under an idempotency key; delivery marks it
`sending` and commits before calling the channel, so a retry after a crash finds it there and
fails it visibly ("outcome unknown") instead of sending it twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.normalize import normalize_country
from leadrelay.compliance import domains
from leadrelay.compliance.audit import append_events
from leadrelay.core.errors import LeadRelayError, NotFound, ValidationFailed
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal
from leadrelay.outreach import delivery, queueing
from leadrelay.outreach.channels.base import SendResult
from leadrelay.outreach.delivery import Handover as Handover
from leadrelay.outreach.delivery import hand_over as hand_over
from leadrelay.outreach.limits import CALL_WINDOW, MESSAGE_WINDOW, WindowKind, stored_settings
from leadrelay.outreach.limits import OutreachPolicy as OutreachPolicy
from leadrelay.outreach.limits import guard_policy as guard_policy
from leadrelay.outreach.limits import outreach_policy as outreach_policy
from leadrelay.outreach.links import unsubscribe_secret as unsubscribe_secret
from leadrelay.outreach.links import unsubscribe_url as unsubscribe_url
from leadrelay.outreach.links import voice_secret as voice_secret
from leadrelay.outreach.local_time import Window
from leadrelay.outreach.models import Message, MessageKind
from leadrelay.outreach.queueing import NotSendable as NotSendable

# The words an admin types to let messages really leave.
LIVE_CONFIRMATION = "send real messages"


class MessageNotFound(NotFound):
    """The message does not exist."""


# --- the tenant's outreach settings -----------------------------------------------------------


async def set_outreach_policy(
    session: AsyncSession,
    actor: Principal,
    settings: Settings,
    *,
    dry_run: bool | None,
    daily_caps: Mapping[str, int] | None,
    domain_hourly_cap: int | None,
    cooldown_days: int | None,
    confirmation: str | None,
    now: datetime,
    country_call_caps: Mapping[str, int] | None = None,
    country_call_windows: Mapping[str, Mapping[str, Any]] | None = None,
    country_message_windows: Mapping[str, Mapping[str, Any]] | None = None,
    accept_domain_risk: bool = False,
) -> OutreachPolicy:
    """Leaving dry-run, raising a cap or the domain throttle above its default, or giving a
    country call or message hours wider than its channel's default, needs the typed
    confirmation; every change is audited with before and after. Leaving dry-run while a
    sending domain fails SPF, DKIM or DMARC also needs `accept_domain_risk` (audited). Each
    per-country map given replaces the stored one."""
    tenant = await session.scalar(
        select(Tenant).where(Tenant.id == actor.tenant_id).with_for_update()
    )
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    before = outreach_policy(tenant, settings)
    defaults = outreach_policy(Tenant(settings={}), settings)
    given_windows = {
        kind: rules
        for kind, rules in (
            (CALL_WINDOW, country_call_windows),
            (MESSAGE_WINDOW, country_message_windows),
        )
        if rules is not None
    }
    # Checked before the confirmation: only a valid window can be compared with the default.
    new_windows = _check_country_rules(country_call_caps, given_windows)
    # Each change that loosens a safe default, by the field that makes it (named in the 422).
    risks: list[dict[str, str]] = []
    if dry_run is False and before.tenant_dry_run:
        risks.append({"field": "dry_run", "reason": "leaves dry-run: messages are really sent"})
    for name, value in sorted((daily_caps or {}).items()):
        default = defaults.daily_caps.get(name)
        if default is not None and value > default:
            risks.append(
                {"field": f"daily_caps.{name}", "reason": f"{value} is above the default {default}"}
            )
    if domain_hourly_cap is not None and domain_hourly_cap > defaults.domain_hourly_cap:
        risks.append(
            {
                "field": "domain_hourly_cap",
                "reason": f"{domain_hourly_cap} is above the default {defaults.domain_hourly_cap}",
            }
        )
    risks += _widened_windows(new_windows, before)
    confirmed = (confirmation or "").strip().lower() == LIVE_CONFIRMATION
    if risks and not confirmed:
        raise ValidationFailed(
            "Leaving dry-run, raising a limit above its default or widening a country's hours "
            "beyond the default needs the confirmation typed out.",
            errors=[
                {"field": "confirmation", "reason": f"type exactly: {LIVE_CONFIRMATION}"},
                *risks,
            ],
        )
    if dry_run is False and before.tenant_dry_run:
        await domains.check_leaving_dry_run(
            session, actor, tenant, settings, accept_risk=accept_domain_risk, now=now
        )
    unknown = sorted(set(daily_caps or {}) - set(defaults.daily_caps))
    if unknown:
        raise ValidationFailed(
            "Unknown channel.",
            errors=[
                {"field": f"daily_caps.{name}", "reason": "unknown channel"} for name in unknown
            ],
        )
    stored = stored_settings(tenant)
    if dry_run is not None:
        stored["dry_run"] = dry_run
    if daily_caps:
        stored["daily_caps"] = {**(stored.get("daily_caps") or {}), **daily_caps}
    if domain_hourly_cap is not None:
        stored["domain_hourly_cap"] = domain_hourly_cap
    if cooldown_days is not None:
        stored["cooldown_days"] = cooldown_days
    # Stored under the code the guard reads ("uk" is GB): an alias would match no recipient.
    if country_call_caps is not None:
        stored["country_call_caps"] = {_iso(k): v for k, v in country_call_caps.items()}
    for kind, rules in given_windows.items():
        stored[kind.field] = {_iso(k): dict(v) for k, v in rules.items()}
    tenant.settings = {**(tenant.settings or {}), "outreach": stored}
    after = outreach_policy(tenant, settings)
    try:
        guard_policy(after)  # what every send will build: it must build now
    except ValueError as exc:
        raise ValidationFailed(
            "The outreach policy is not valid.", errors=[{"field": "policy", "reason": str(exc)}]
        ) from None
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "outreach.policy_changed",
                target_type="tenant",
                target_id=actor.tenant_id,
                before=_audit_view(before),
                after=_audit_view(after),
                # What the typed confirmation was given for (empty: nothing needed it).
                confirmed=[risk["field"] for risk in risks],
            )
        ],
        now=now,
    )
    return after


def _check_country_rules(
    caps: Mapping[str, int] | None,
    windows: Mapping[WindowKind, Mapping[str, Mapping[str, Any]]],
) -> dict[WindowKind, dict[str, Window]]:
    """Each kind's windows read, by country as given; raises `ValidationFailed` naming every
    unknown country and bad window at `<map>.<country>`."""
    problems = [
        _not_a_country("country_call_caps", country)
        for country in caps or {}
        if normalize_country(country) is None
    ]
    problems += _named_twice("country_call_caps", caps or {})
    checked: dict[WindowKind, dict[str, Window]] = {}
    for kind, rules in windows.items():
        problems += _named_twice(kind.field, rules)
        checked[kind] = {}
        for country, rule in rules.items():
            if normalize_country(country) is None:
                problems.append(_not_a_country(kind.field, country))
                continue
            try:
                checked[kind][country] = _settable_window(kind, rule)
            except (ValueError, TypeError) as exc:
                problems.append({"field": f"{kind.field}.{country}", "reason": str(exc)})
    if problems:
        raise ValidationFailed("A country rule is not valid.", errors=problems)
    return checked


def _named_twice(name: str, countries: Iterable[str]) -> list[dict[str, str]]:
    """One problem for each country given a second time under another spelling ("UK" beside
    "GB"): stored by code, one of the two rules would silently replace the other."""
    first: dict[str, str] = {}
    problems = []
    for country in countries:
        code = normalize_country(country)
        if code is None:
            continue
        if code in first:
            problems.append(
                {
                    "field": f"{name}.{country}",
                    "reason": f"{country!r} and {first[code]!r} both name {code}: keep one",
                }
            )
        else:
            first[code] = country
    return problems


def _not_a_country(name: str, country: str) -> dict[str, str]:
    return {"field": f"{name}.{country}", "reason": f"{country!r} is not an ISO 3166 country code"}


def _settable_window(kind: WindowKind, rule: Mapping[str, Any]) -> Window:
    """The rule as a window a tenant may set: one the guard reads, ending after it starts, on
    at least one day. The last two are the console form's rules, so the API stores nothing
    the form could not show back (the guard would read an earlier end as running past
    midnight)."""
    window = kind.window(rule)
    if window.crosses_midnight:
        raise ValueError(f"ends before it starts: choose an end after {window.start} (or 24:00)")
    if not window.days:
        raise ValueError("choose at least one day")
    return window


def _widened_windows(
    windows: Mapping[WindowKind, Mapping[str, Window]], before: OutreachPolicy
) -> list[dict[str, str]]:
    """The risks of the windows wider than their channel's default. One already stored as it
    is was confirmed then: saving the table again for another change does not ask again."""
    risks: list[dict[str, str]] = []
    for kind, by_country in windows.items():
        stored = before.country_windows(kind)
        for country, window in sorted(by_country.items()):
            kept = stored.get(_iso(country))
            if kind.is_wider_than_default(window) and (kept is None or kind.window(kept) != window):
                risks.append(
                    {
                        "field": f"{kind.field}.{country}",
                        "reason": f"{window.describe()} is wider than the default "
                        f"({kind.default.describe()})",
                    }
                )
    return risks


def _iso(country: str) -> str:
    """The ISO 3166 alpha-2 code of a country already checked to be one."""
    return normalize_country(country) or country.upper()


def _audit_view(view: OutreachPolicy) -> dict[str, Any]:
    return {
        "dry_run": view.tenant_dry_run,
        "daily_caps": dict(view.daily_caps),
        "domain_hourly_cap": view.domain_hourly_cap,
        "cooldown_days": view.cooldown_days,
        "country_call_caps": dict(view.country_call_caps),
        "country_call_windows": dict(view.country_call_windows),
        "country_message_windows": dict(view.country_message_windows),
    }


# --- one message at a time ----------------------------------------------------------------------


async def queue_draft(
    session: AsyncSession,
    actor: Principal,
    draft_id: uuid.UUID,
    *,
    settings: Settings,
    keys: str,
    kind: MessageKind,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Message, bool]:
    """The draft's current revision as a message, decided by the guard and queued for delivery
    when allowed. Returns (message, created); the same idempotency key returns the first
    message and sends nothing again. Raises what `queue_drafts` reports for the draft."""
    [answer] = await queueing.queue_drafts(
        session,
        actor,
        [queueing.QueueRequest(draft_id, idempotency_key)],
        settings=settings,
        keys=keys,
        kind=kind,
        now=now,
    )
    if isinstance(answer, LeadRelayError):
        raise answer
    return await _message(session, answer.message_id), answer.created


async def release_deferred(
    session: AsyncSession, actor: Principal, *, settings: Settings, keys: str, now: datetime
) -> int:
    """Deferred messages whose time has come go through the guard again (it may block them
    for a new reason, or defer them once more)."""
    return await queueing.release_due(session, actor, settings=settings, keys=keys, now=now)


async def begin_delivery(
    session: AsyncSession, message_id: uuid.UUID, *, settings: Settings, keys: str, now: datetime
) -> Handover | None:
    """Mark the message `sending` (the caller commits before calling the channel); None when
    there is nothing to send now (already sent, failed, blocked, interrupted before, or its
    provider's circuit is open)."""
    started = await delivery.begin_deliveries(
        session, [message_id], settings=settings, keys=keys, now=now
    )
    if started.missing:
        raise MessageNotFound()
    return started.handovers[0] if started.handovers else None


async def finish_delivery(
    session: AsyncSession,
    message_id: uuid.UUID,
    result: SendResult,
    *,
    settings: Settings,
    keys: str,
    now: datetime,
) -> tuple[Message, float | None]:
    """Record the channel's answer. Returns the message and, for a transient failure with
    attempts left, the seconds after which to try again."""
    outcomes = await delivery.finish_deliveries(
        session, [(message_id, result)], settings=settings, keys=keys, now=now
    )
    if not outcomes:
        raise MessageNotFound()
    return await _message(session, message_id), outcomes[0].retry_in


async def _message(session: AsyncSession, message_id: uuid.UUID) -> Message:
    """The message as stored now (the chunk paths write with set-based SQL, past the ORM)."""
    message = await session.scalar(
        select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    )
    if message is None:
        raise MessageNotFound()
    return message
