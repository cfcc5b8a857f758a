"""A tenant's outreach limits as stored in its settings, and the guard's `Policy` built from them.
What a send reads; `service.set_outreach_policy` is how they change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.identity.models import Tenant
from leadrelay.outreach import policy as guard
from leadrelay.outreach.local_time import Window, Windows

_DAY_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class OutreachPolicy:
    dry_run: bool  # in effect: the process setting or the tenant's
    tenant_dry_run: bool
    forced_by_settings: bool  # LEADRELAY_DRY_RUN=true keeps every tenant in dry-run
    daily_caps: Mapping[str, int]
    domain_hourly_cap: int
    cooldown_days: int
    timezone: str
    # Per country (ISO 2): calls a day, the local hours calls may be placed, and the local
    # hours SMS and WhatsApp messages may be sent.
    country_call_caps: Mapping[str, int] = field(default_factory=dict)
    country_call_windows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    country_message_windows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def country_windows(self, kind: WindowKind) -> Mapping[str, Mapping[str, Any]]:
        """The stored rules of that kind, by country."""
        if kind is CALL_WINDOW:
            return self.country_call_windows
        return self.country_message_windows


def stored_settings(tenant: Tenant) -> dict[str, Any]:
    stored = (tenant.settings or {}).get("outreach")
    return dict(stored) if isinstance(stored, dict) else {}


def outreach_policy(tenant: Tenant, settings: Settings) -> OutreachPolicy:
    stored = stored_settings(tenant)
    caps = {
        Channel.EMAIL.value: settings.daily_cap_email,
        Channel.SMS.value: settings.daily_cap_sms,
        Channel.WHATSAPP.value: settings.daily_cap_sms,
        Channel.VOICE.value: settings.daily_cap_voice,
    }
    custom = stored.get("daily_caps")
    if isinstance(custom, dict):
        caps.update({k: int(v) for k, v in custom.items() if k in caps})
    tenant_dry_run = stored.get("dry_run", True) is not False
    return OutreachPolicy(
        dry_run=settings.dry_run or tenant_dry_run,
        tenant_dry_run=tenant_dry_run,
        forced_by_settings=settings.dry_run,
        daily_caps=caps,
        domain_hourly_cap=int(stored.get("domain_hourly_cap", 5)),
        cooldown_days=int(stored.get("cooldown_days", 30)),
        timezone=str((tenant.settings or {}).get("timezone") or "UTC"),
        country_call_caps=dict(stored.get("country_call_caps") or {}),
        country_call_windows=dict(stored.get("country_call_windows") or {}),
        country_message_windows=dict(stored.get("country_message_windows") or {}),
    )


@dataclass(frozen=True, slots=True)
class WindowKind:
    """A window a tenant may set per country: the name it is stored, audited and sent to the
    API under, the channels it governs in that country, and the guard's default for them."""

    field: str
    channels: tuple[Channel, ...]
    default: Window

    def window(self, rule: Mapping[str, Any]) -> Window:
        """A stored rule, {"start": "HH:MM", "end": "HH:MM", "days": [0…6]}, as a window; days
        left out are the default's (weekdays for calls, every day for messages). ValueError
        when it is not one."""
        days = rule.get("days")
        return Window(
            str(rule.get("start", "")),
            str(rule.get("end", "")),
            frozenset(int(d) for d in days) if days is not None else self.default.days,
        )

    def is_wider_than_default(self, window: Window) -> bool:
        """Open at some time the default is closed: it starts earlier, ends later (running
        past midnight is later) or adds days. Exact because no default crosses midnight."""
        end = window.end_second + (_DAY_SECONDS if window.crosses_midnight else 0)
        return (
            window.start_second < self.default.start_second
            or end > self.default.end_second
            or not window.days <= self.default.days
        )


CALL_WINDOW = WindowKind("country_call_windows", (Channel.VOICE,), guard.CALL_HOURS[0])
MESSAGE_WINDOW = WindowKind(
    "country_message_windows", (Channel.SMS, Channel.WHATSAPP), guard.MESSAGE_HOURS[0]
)
WINDOW_KINDS: tuple[WindowKind, ...] = (CALL_WINDOW, MESSAGE_WINDOW)


def guard_policy(view: OutreachPolicy) -> guard.Policy:
    country_windows: dict[str, dict[Channel, Windows | None]] = {}
    for kind in WINDOW_KINDS:
        for country, rule in view.country_windows(kind).items():
            window = (kind.window(rule),)
            country_windows.setdefault(country, {}).update(dict.fromkeys(kind.channels, window))
    return guard.Policy(
        tenant_zone=view.timezone,
        daily_caps={Channel(k): v for k, v in view.daily_caps.items()},
        domain_hourly_cap=view.domain_hourly_cap,
        cooldown=timedelta(days=view.cooldown_days),
        country_call_caps=dict(view.country_call_caps),
        country_windows=country_windows,
    )
