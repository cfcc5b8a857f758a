"""The per-tenant registry of lawful lead sources, and the check every intake path runs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.models import LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.compliance.audit import record
from leadrelay.core.errors import Conflict, NotFound, ValidationFailed
from leadrelay.identity.service import Principal

MIN_ASSESSMENT_CHARS = 40


class SourceNotFound(NotFound):
    """The source does not exist."""


class SourceNameTaken(Conflict):
    """A source with this name already exists."""

    code = "source-name-taken"


class SourceRefused(ValidationFailed):
    """Leads from this source are not accepted."""

    code = "source-refused"


def _refuse(reason: str, detail: str) -> SourceRefused:
    return SourceRefused(detail, errors=[{"field": "source", "message": detail, "type": reason}])


def check_source_accepts(source: Source | None, *, name: str = "") -> Source:
    """The lawful-source gate: unknown, unvetted, blocked and personal-profile sources are
    refused with a reason the caller can act on."""
    if source is None:
        raise _refuse("unknown", f"no source named {name!r} is registered for this tenant")
    if source.is_personal_profile:
        raise _refuse(
            "personal-profile",
            f"source {source.name!r} collects personal profiles, which have no legal basis here",
        )
    if source.status == SourceStatus.BLOCKED:
        raise _refuse("blocked", f"source {source.name!r} is blocked")
    if source.status != SourceStatus.VETTED:
        raise _refuse("not-vetted", f"source {source.name!r} has not been vetted yet")
    return source


def _check_basis(legal_basis: LegalBasis, assessment: str) -> None:
    if (
        legal_basis == LegalBasis.LEGITIMATE_INTEREST
        and len(assessment.strip()) < MIN_ASSESSMENT_CHARS
    ):
        raise ValidationFailed(
            "legitimate interest needs its written assessment",
            errors=[
                {
                    "field": "assessment",
                    "message": f"describe the legitimate-interest assessment "
                    f"(at least {MIN_ASSESSMENT_CHARS} characters)",
                    "type": "missing_assessment",
                }
            ],
        )


async def create_source(
    session: AsyncSession,
    actor: Principal,
    *,
    name: str,
    kind: SourceKind,
    legal_basis: LegalBasis,
    assessment: str,
    default_country: str,
    is_personal_profile: bool,
    now: datetime,
) -> Source:
    _check_basis(legal_basis, assessment)
    source = Source(
        tenant_id=actor.tenant_id,
        name=name.strip(),
        kind=kind,
        legal_basis=legal_basis,
        assessment=assessment.strip(),
        default_country=default_country.upper(),
        is_personal_profile=is_personal_profile,
        status=SourceStatus.PENDING,
    )
    try:
        async with session.begin_nested():
            session.add(source)
            await session.flush()
    except IntegrityError as error:
        raise SourceNameTaken() from error
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "source.created",
            target_type="source",
            target_id=source.id,
            kind=kind.value,
            legal_basis=legal_basis.value,
        ),
        now=now,
    )
    return source


async def list_sources(session: AsyncSession) -> list[Source]:
    return list(await session.scalars(select(Source).order_by(Source.name)))


async def access_source(session: AsyncSession, actor: Principal, source_id: uuid.UUID) -> Source:
    source = await session.get(Source, source_id)
    if source is None or source.tenant_id != actor.tenant_id:
        raise SourceNotFound()
    return source


async def get_source_by_name(session: AsyncSession, name: str) -> Source | None:
    return await session.scalar(select(Source).where(Source.name == name))


async def update_source(
    session: AsyncSession,
    actor: Principal,
    source_id: uuid.UUID,
    *,
    status: SourceStatus | None,
    assessment: str | None,
    default_country: str | None,
    now: datetime,
) -> Source:
    """Vetting and blocking are audited status changes."""
    source = await access_source(session, actor, source_id)
    changes: dict[str, object] = {}
    if assessment is not None:
        _check_basis(LegalBasis(source.legal_basis), assessment)
        source.assessment, changes["assessment_changed"] = assessment.strip(), True
    if default_country is not None:
        source.default_country = changes["default_country"] = default_country.upper()
    if status is not None and status != source.status:
        if status == SourceStatus.VETTED:
            _check_basis(LegalBasis(source.legal_basis), source.assessment)
        source.status, changes["status"] = status, status.value
    if changes:
        await record(
            session,
            actor.tenant_id,
            actor.audit("source.updated", target_type="source", target_id=source.id, **changes),
            now=now,
        )
    return source
