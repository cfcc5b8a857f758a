"""Duplicate review: likely pairs side by side with the scorer's reasons, and a preview of the
record a merge would leave, merged or kept apart by a person."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from leadrelay.capture import dedup
from leadrelay.capture.dedup_models import MatchReview, ReviewStatus
from leadrelay.capture.matching import B2B_LEAD_CONFIG
from leadrelay.capture.models import Lead, LeadStatus
from leadrelay.capture.sources import list_sources
from leadrelay.console.auth import Console, ViewLeads, WriteLeads
from leadrelay.console.leads import FIELD_LABELS
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity.permissions import Permission

router = APIRouter(prefix="/console/dedup")

COMPARED_FIELDS = (
    "full_name",
    "email",
    "phone_e164",
    "company",
    "domain",
    "title",
    "city",
    "country",
)
# The company key is the matcher's own spelling of the company: nothing a person decides on.
PREVIEW_FIELDS = tuple(name for name in dedup.MERGE_FIELDS if name != "company_key")


@dataclass(frozen=True, slots=True)
class FieldRow:
    name: str
    survivor: str | None
    other: str | None

    @property
    def differs(self) -> bool:
        def plain(value: str | None) -> str:
            return (value or "").strip().casefold()

        return plain(self.survivor) != plain(self.other)


@dataclass(frozen=True, slots=True)
class Pair:
    """One open review as a person sees it: the older lead (which would survive) first."""

    review: MatchReview
    survivor: Lead
    other: Lead
    rows: list[FieldRow]
    preview: dict[str, Any]

    @property
    def is_stale(self) -> bool:
        """One of the two was merged elsewhere since the pair was queued."""
        return LeadStatus.MERGED in (self.survivor.status, self.other.status)


def _pair(review: MatchReview, a: Lead, b: Lead) -> Pair:
    # The survivor is the older lead, as `dedup.decide_review` chooses it.
    keep, other = (a, b) if (a.created_at, a.id) <= (b.created_at, b.id) else (b, a)
    rows = [FieldRow(name, getattr(keep, name), getattr(other, name)) for name in COMPARED_FIELDS]
    return Pair(review, keep, other, rows, dedup.preview(keep, other))


async def _open_pairs(console: Console) -> list[Pair]:
    reviews = await dedup.list_reviews(console.session, status=ReviewStatus.OPEN)
    ids = {lead_id for review in reviews for lead_id in (review.lead_a_id, review.lead_b_id)}
    leads = (
        {
            lead.id: lead
            for lead in await console.session.scalars(select(Lead).where(Lead.id.in_(ids)))
        }
        if ids
        else {}
    )
    return [
        _pair(review, leads[review.lead_a_id], leads[review.lead_b_id])
        for review in reviews
        if review.lead_a_id in leads and review.lead_b_id in leads
    ]


async def _panel(
    request: Request,
    console: Console,
    *,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "pairs": await _open_pairs(console),
        "source_names": {source.id: source.name for source in await list_sources(console.session)},
        "labels": FIELD_LABELS,
        "preview_fields": PREVIEW_FIELDS,
        "thresholds": {"review": B2B_LEAD_CONFIG.low, "merge": B2B_LEAD_CONFIG.high},
        "can_decide": console.can(Permission.LEADS_WRITE),
        "panel_notices": notices or [],
    }
    template = "dedup/_panel.html" if is_htmx(request) else "dedup/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def dedup_page(request: Request, console: ViewLeads) -> Response:
    return await _panel(request, console)


async def _decide(
    request: Request, console: WriteLeads, review_id: uuid.UUID, *, merge: bool
) -> Response:
    _, done = await dedup.decide_review(
        console.session,
        review_id,
        merge=merge,
        now=utcnow(),
        actor_type="user",
        actor_id=str(console.principal.id),
    )
    if done is not None:
        notice = Notice(
            "success",
            "Merged: the older lead now holds both records. The merge can be undone from its page.",
            href=f"/console/leads/{done.survivor_id}",
            link="Open the surviving lead",
        )
    else:
        notice = Notice("success", "Kept apart: this pair will not be suggested again.")
    return await _panel(request, console, notices=[notice])


@router.post("/{review_id}/merge")
async def merge_pair(request: Request, console: WriteLeads, review_id: uuid.UUID) -> Response:
    return await _decide(request, console, review_id, merge=True)


@router.post("/{review_id}/keep-apart")
async def keep_pair_apart(request: Request, console: WriteLeads, review_id: uuid.UUID) -> Response:
    return await _decide(request, console, review_id, merge=False)
