"""Consent records in the console: when, how and for what purpose each person gave or withdrew
consent, per channel — the whole workspace's records with filters, and one lead's history with
its current state per channel. Read-only: consents are recorded by the API, by unsubscribe
links and by opt-out replies (`outreach.suppression.record_consent`), each audited there."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from leadrelay.capture.models import Lead
from leadrelay.console.auth import Console, ViewOutreach
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import is_htmx, render
from leadrelay.identity.permissions import Permission
from leadrelay.outreach import suppression
from leadrelay.outreach.models import Consent, ConsentState

router = APIRouter(prefix="/console/consents")

PAGE_SIZE = 100
CHANNELS = {"email": "E-mail", "sms": "SMS", "whatsapp": "WhatsApp", "voice": "Voice"}
STATES = {ConsentState.GRANTED.value: "granted", ConsentState.WITHDRAWN.value: "withdrawn"}


@dataclass(frozen=True, slots=True)
class ConsentFilter:
    channel: str = ""
    state: str = ""

    @classmethod
    def of(cls, channel: str, state: str) -> ConsentFilter:
        """Unknown values are ignored (shown as "any"), never an error page."""
        return cls(channel if channel in CHANNELS else "", state if state in STATES else "")


async def _records(
    console: Console, filters: ConsentFilter
) -> tuple[list[tuple[Consent, str]], int]:
    """Newest first, each with its lead's name; and how many match in all."""
    query = select(Consent, Lead.full_name).join(Lead, Lead.id == Consent.lead_id)
    counted = select(func.count()).select_from(Consent)
    if filters.channel:
        query = query.where(Consent.channel == filters.channel)
        counted = counted.where(Consent.channel == filters.channel)
    if filters.state:
        query = query.where(Consent.state == filters.state)
        counted = counted.where(Consent.state == filters.state)
    rows = await console.session.execute(
        query.order_by(Consent.recorded_at.desc(), Consent.id).limit(PAGE_SIZE)
    )
    total = int(await console.session.scalar(counted) or 0)
    return [(consent, str(name or "")) for consent, name in rows], total


def _labels() -> dict[str, Any]:
    return {"channels": CHANNELS, "states": STATES}


@router.get("")
async def consents_page(
    request: Request,
    console: ViewOutreach,
    channel: Annotated[str, Query(max_length=20)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    filters = ConsentFilter.of(channel, state)
    records, total = await _records(console, filters)
    context: dict[str, Any] = {
        "records": records,
        "total": total,
        "page_size": PAGE_SIZE,
        "filters": filters,
        **_labels(),
    }
    template = "consents/_list.html" if is_htmx(request) else "consents/page.html"
    return render(request, template, context)


@router.get("/leads/{lead_id}")
async def lead_consents_page(
    request: Request, console: ViewOutreach, lead_id: uuid.UUID
) -> Response:
    """One lead's consent history; another tenant's lead is a 404 (RLS hides it)."""
    lead = await console.session.get(Lead, lead_id)
    if lead is None:
        raise ConsoleProblem(404, "Lead not found", "There is no such lead in this workspace.")
    history = list(await suppression.consents_of(console.session, lead_id))
    current: dict[str, Consent] = {}
    for record in history:  # newest first: the first per channel is its state
        current.setdefault(record.channel, record)
    context: dict[str, Any] = {
        "lead": lead,
        "history": history,
        "current": current,
        "can_read_leads": console.can(Permission.LEADS_READ),
        **_labels(),
    }
    return render(request, "consents/lead.html", context)
