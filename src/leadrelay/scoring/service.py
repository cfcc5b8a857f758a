"""Scoring: ICP versions (draft → active → retired), scoring chunks of leads, rescoring a
tenant after an activation, and the quality of each version measured on CRM outcomes.

A version is immutable once activated: each stored score names the version that produced it,
so every score can be reproduced and versions compared on the same outcomes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.facts import lead_facts
from leadrelay.compliance.audit import append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.errors import Conflict, NotFound, ValidationFailed
from leadrelay.core.events import emit_many
from leadrelay.core.jobs import defer
from leadrelay.core.jobs_models import JobRun
from leadrelay.identity.service import Principal
from leadrelay.scoring import icp, quality
from leadrelay.scoring.models import IcpVersion, LeadScore, VersionStatus

RESCORE_TASK = "scoring.rescore"
SCORE_TASK = "scoring.score_leads"
ROUTE_TASK = "routing.route_leads"  # registered by routing.jobs
RESCORE_PAGE = 1000


class VersionNotFound(NotFound):
    """The ICP version does not exist."""


class VersionImmutable(Conflict):
    """Only a draft can be changed: an active or retired version is immutable."""

    code = "version-immutable"


class InvalidRules(ValidationFailed):
    """The rule set has invalid rules."""

    code = "invalid-rules"


def body_of(version: IcpVersion) -> icp.RuleSetBody:
    return icp.RuleSetBody.model_validate({"rules": version.rules, "threshold": version.threshold})


def checked(body: icp.RuleSetBody) -> icp.RuleSetBody:
    problems = icp.check_rule_set(body)
    if problems:
        raise InvalidRules(
            f"{len(problems)} problem(s) in the rule set", errors=icp.problems_as_errors(problems)
        )
    return body


async def list_versions(session: AsyncSession) -> list[IcpVersion]:
    return list(await session.scalars(select(IcpVersion).order_by(IcpVersion.number.desc())))


async def get_version(session: AsyncSession, version_id: uuid.UUID) -> IcpVersion:
    version = await session.get(IcpVersion, version_id)
    if version is None:
        raise VersionNotFound()
    return version


async def active_version(session: AsyncSession) -> IcpVersion | None:
    return await session.scalar(select(IcpVersion).where(IcpVersion.status == VersionStatus.ACTIVE))


async def create_draft(
    session: AsyncSession,
    actor: Principal,
    body: icp.RuleSetBody,
    *,
    now: datetime,
    note: str = "",
    based_on: IcpVersion | None = None,
    suggestion: dict[str, Any] | None = None,
) -> IcpVersion:
    checked(body)
    # Serialize version numbering per tenant: the tenant row is the natural lock.
    await session.execute(
        text("SELECT 1 FROM tenants WHERE id = :id FOR UPDATE"), {"id": actor.tenant_id}
    )
    number = (await session.scalar(select(func.max(IcpVersion.number)))) or 0
    version = IcpVersion(
        tenant_id=actor.tenant_id,
        number=number + 1,
        status=VersionStatus.DRAFT,
        rules=[rule.model_dump(mode="json") for rule in body.rules],
        threshold=body.threshold,
        note=note,
        based_on_id=based_on.id if based_on else None,
        suggestion=suggestion,
        created_by=actor.name,
        created_at=now,
        updated_at=now,
    )
    session.add(version)
    await session.flush()
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "icp.draft_created",
                target_type="icp_version",
                target_id=version.id,
                number=version.number,
                rules=len(body.rules),
            )
        ],
        now=now,
    )
    return version


async def update_draft(
    session: AsyncSession,
    actor: Principal,
    version_id: uuid.UUID,
    body: icp.RuleSetBody,
    *,
    now: datetime,
    note: str | None = None,
) -> IcpVersion:
    version = await _locked(session, version_id)
    if version.status != VersionStatus.DRAFT:
        raise VersionImmutable()
    checked(body)
    version.rules = [rule.model_dump(mode="json") for rule in body.rules]
    version.threshold = body.threshold
    if note is not None:
        version.note = note
    version.updated_at = now
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "icp.draft_updated",
                target_type="icp_version",
                target_id=version.id,
                rules=len(body.rules),
            )
        ],
        now=now,
    )
    return version


async def _locked(session: AsyncSession, version_id: uuid.UUID) -> IcpVersion:
    version = await session.scalar(
        select(IcpVersion).where(IcpVersion.id == version_id).with_for_update()
    )
    if version is None:
        raise VersionNotFound()
    return version


async def activate(
    session: AsyncSession, actor: Principal, version_id: uuid.UUID, *, now: datetime
) -> tuple[IcpVersion, JobRun]:
    """Make a draft the active version (the previous one retires) and start rescoring every
    open lead with it, as a job whose progress the returned run shows."""
    version = await _locked(session, version_id)
    if version.status != VersionStatus.DRAFT:
        raise VersionImmutable("Only a draft can be activated.")
    checked(body_of(version))
    previous = await session.scalar(
        select(IcpVersion).where(IcpVersion.status == VersionStatus.ACTIVE).with_for_update()
    )
    if previous is not None:
        previous.status = VersionStatus.RETIRED
        await session.flush()  # the one-active index must see the retirement first
    version.status = VersionStatus.ACTIVE
    version.activated_at, version.activated_by = now, actor.name
    run = JobRun(
        tenant_id=actor.tenant_id,
        kind="rescore",
        status="running",
        data={"version_id": str(version.id), "number": version.number},
        started_at=now,
    )
    session.add(run)
    await session.flush()
    await defer(
        session,
        RESCORE_TASK,
        tenant_id=str(actor.tenant_id),
        run_id=str(run.id),
        version_id=str(version.id),
    )
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "icp.activated",
                target_type="icp_version",
                target_id=version.id,
                number=version.number,
                retired=str(previous.id) if previous else None,
            )
        ],
        now=now,
    )
    return version, run


# --- scoring ---------------------------------------------------------------------------------

_UPSERT_SCORES = (
    "INSERT INTO lead_scores (tenant_id, lead_id, version_id, score, total, qualified, "
    "breakdown, matched, scored_at) "
    "SELECT %s, lead_id, %s, score, total, qualified, breakdown, matched, %s "
    "FROM unnest(%b::uuid[], %b::int[], %b::int[], %b::bool[], %b::jsonb[], %b::jsonb[]) "
    "AS t(lead_id, score, total, qualified, breakdown, matched) "
    "ON CONFLICT (lead_id, version_id) DO UPDATE SET score = excluded.score, "
    "total = excluded.total, qualified = excluded.qualified, breakdown = excluded.breakdown, "
    "matched = excluded.matched, scored_at = excluded.scored_at"
)
# Qualified leads not yet announced for this version: marked once, so a rescore or a retried
# job never emits `lead.qualified` twice for the same lead and version.
_MARK_QUALIFIED = (
    "UPDATE lead_scores SET qualified_at = %s WHERE version_id = %s AND lead_id = ANY(%b::uuid[]) "
    "AND qualified AND qualified_at IS NULL RETURNING lead_id, score"
)


@dataclass(frozen=True, slots=True)
class ScoreRun:
    scored: int
    qualified: list[uuid.UUID]  # newly qualified by this run


async def score_leads(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    lead_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    version: IcpVersion | None = None,
    route: bool = True,
) -> ScoreRun:
    """Score a chunk of leads with the active version (or `version`); newly qualified leads
    get a `lead.qualified` event and, when `route`, a routing job."""
    from psycopg.types.json import Jsonb

    version = version or await active_version(session)
    if version is None or not lead_ids:
        return ScoreRun(0, [])
    body = body_of(version)
    facts = await lead_facts(session, lead_ids, now=now)
    if not facts:
        return ScoreRun(0, [])
    ids, scores, totals, flags, breakdowns, matched = [], [], [], [], [], []
    for lead_id, lead in facts.items():
        result = icp.score(body, lead)
        ids.append(lead_id)
        scores.append(result.score)
        totals.append(result.total)
        flags.append(result.qualified)
        breakdowns.append(Jsonb(result.breakdown))
        matched.append(Jsonb(list(result.matched)))
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _UPSERT_SCORES,
            (tenant_id, version.id, now, ids, scores, totals, flags, breakdowns, matched),
        )
        qualified: list[tuple[uuid.UUID, int]] = []
        if version.status == VersionStatus.ACTIVE:
            await cursor.execute(_MARK_QUALIFIED, (now, version.id, ids))
            qualified = [(row[0], row[1]) for row in await cursor.fetchall()]
    if qualified:
        await emit_many(
            session,
            tenant_id,
            [
                (
                    "lead.qualified",
                    {"lead_id": str(lead_id), "score": score, "version": version.number},
                )
                for lead_id, score in qualified
            ],
        )
        if route:
            await defer(
                session,
                ROUTE_TASK,
                tenant_id=str(tenant_id),
                lead_ids=[str(lead_id) for lead_id, _ in qualified],
            )
    return ScoreRun(len(ids), [lead_id for lead_id, _ in qualified])


async def rescore_page(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    version: IcpVersion,
    *,
    after: uuid.UUID | None,
    now: datetime,
) -> tuple[int, uuid.UUID | None]:
    """Score the next page of open leads (by id); returns (count, last id) — None when done."""
    ids = list(
        await session.scalars(
            text(
                "SELECT id FROM leads WHERE status = 'new' AND (CAST(:after AS uuid) IS NULL "
                "OR id > CAST(:after AS uuid)) ORDER BY id LIMIT :limit"
            ),
            {"after": after, "limit": RESCORE_PAGE},
        )
    )
    if not ids:
        return 0, None
    await score_leads(session, tenant_id, ids, now=now, version=version)
    return len(ids), ids[-1]


async def count_open_leads(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT count(*) FROM leads WHERE status = 'new'")) or 0)


async def score_of(session: AsyncSession, lead_id: uuid.UUID) -> LeadScore | None:
    """The lead's score by the active version."""
    return await session.scalar(
        select(LeadScore)
        .join(IcpVersion, IcpVersion.id == LeadScore.version_id)
        .where(LeadScore.lead_id == lead_id, IcpVersion.status == VersionStatus.ACTIVE)
    )


# --- quality from outcomes ------------------------------------------------------------------

_LABELLED = text(
    """
    SELECT s.score, s.matched, o.label = 'won' AS won
    FROM lead_scores s
    JOIN LATERAL (
        SELECT label FROM lead_outcomes o
        WHERE o.lead_id = s.lead_id ORDER BY o.closed_at DESC, o.id LIMIT 1
    ) o ON true
    WHERE s.version_id = :version
    """
)


async def labelled(
    session: AsyncSession, version: IcpVersion
) -> tuple[list[float], list[dict[str, bool]], list[bool]]:
    """Scores, matched rules and won/not-won of every lead this version scored that has an
    outcome (the latest one counts)."""
    rows = (await session.execute(_LABELLED, {"version": version.id})).all()
    rule_ids = [rule["id"] for rule in version.rules]
    scores = [float(row.score) for row in rows]
    matches = [{rule: rule in set(row.matched) for rule in rule_ids} for row in rows]
    return scores, matches, [bool(row.won) for row in rows]


async def quality_of(session: AsyncSession, version: IcpVersion) -> quality.QualityReport:
    scores, _, labels = await labelled(session, version)
    return quality.quality_report(scores, labels, threshold=float(version.threshold))


async def suggest(
    session: AsyncSession, actor: Principal, version: IcpVersion, *, now: datetime
) -> IcpVersion:
    """Fit weights on the outcomes of `version`'s leads and save them as a new draft, with the
    backtest of both beside each other. Nothing activates by itself."""
    _, matches, labels = await labelled(session, version)
    body = body_of(version)
    suggestion = quality.suggest_weights(
        matches, labels, icp.rule_points(body), threshold=float(version.threshold)
    )
    points = {rule.rule_id: rule.suggested_points for rule in suggestion.rules}
    draft = icp.RuleSetBody(
        rules=[
            rule.model_copy(update={"points": points.get(rule.id, rule.points)})
            for rule in body.rules
        ],
        threshold=body.threshold,
    )
    return await create_draft(
        session,
        actor,
        draft,
        now=now,
        note=f"Suggested from outcomes of version {version.number}",
        based_on=version,
        suggestion=_jsonable(asdict(suggestion)),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


async def finish_run(
    session: AsyncSession, run_id: uuid.UUID, *, done: int, total: int, now: datetime | None
) -> None:
    values: dict[str, Any] = {"done": done, "total": total}
    if now is not None:
        values.update(status="done", finished_at=now)
    await session.execute(update(JobRun).where(JobRun.id == run_id).values(**values))
