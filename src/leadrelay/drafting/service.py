"""Drafting for a lead: evidence from provenance, a template (the tenant's or a built-in one) or
an LLM, and the draft stored as revision 1, ready for review.

The LLM is only ever a better writer, never a source: its prompt holds the evidenced facts, its
answer is validated against the same evidence, and whenever it is off, slow, failing or says
something the evidence does not back, the template draft is used and `llm_note` tells the
reviewer why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals import service as approvals
from leadrelay.approvals.models import Draft, DraftStatus, MessageTemplateRow
from leadrelay.capture import service as capture
from leadrelay.capture.models import Lead, LeadObservation, Source
from leadrelay.compliance.audit import append_events
from leadrelay.core.errors import Conflict, NotFound, ValidationFailed
from leadrelay.drafting import compose as composer
from leadrelay.drafting.evidence import (
    LEAD_FIELDS,
    Channel,
    Evidence,
    Length,
    Observation,
    Sender,
    Tone,
    evidence_from,
)
from leadrelay.drafting.llm import LlmDrafter, build_messages, parse_email
from leadrelay.drafting.templates import (
    DEFAULT_TEMPLATES,
    MessageTemplate,
    check_template,
    cta_text,
    default_template,
)
from leadrelay.drafting.validate import Problem, validate
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal

BUILTIN = "builtin:"
# Contact details are for the channel, not the prose: the model never needs them.
PROMPT_FIELDS = ("first_name", "full_name", "title", "company", "domain", "city", "country")
# What a flag on the lead says was verified, in evidence field names.
VERIFIED_FLAGS = {"email_verified": "email", "phone_verified": "phone_e164"}
SENDER_FIELDS = ("name", "company", "postal_address", "email", "phone")
BUILTIN_TEMPLATES: Mapping[str, MessageTemplate] = {t.id: t for t in DEFAULT_TEMPLATES.values()}


class SenderMissing(Conflict):
    """The tenant has not set the sender identity every message must carry."""

    code = "sender-missing"


class NotContactable(Conflict):
    """The lead may not be contacted, so no message is drafted for it."""

    code = "lead-not-contactable"


class TemplateNotFound(NotFound):
    """The template does not exist."""


@dataclass(frozen=True, slots=True)
class DraftRequest:
    lead_id: uuid.UUID
    channel: Channel
    tone: Tone = Tone.FRIENDLY
    length: Length = Length.MEDIUM
    cta: str = "book_call"
    template: str | None = None  # a tenant template's id or "builtin:default.<channel>.<tone>"
    use_llm: bool = True  # when an LLM is configured
    instructions: str | None = None  # extra guidance for the LLM
    first_message: bool | None = None  # None: nothing was sent to the lead on this channel yet
    submit: bool = False


# --- sender ------------------------------------------------------------------------------------


def sender_settings(tenant: Tenant) -> dict[str, str | None]:
    stored = (tenant.settings or {}).get("sender")
    stored = stored if isinstance(stored, dict) else {}
    return {name: stored.get(name) for name in SENDER_FIELDS}


def sender_of(tenant: Tenant) -> Sender:
    values = sender_settings(tenant)
    missing = [name for name in ("name", "company", "postal_address") if not values.get(name)]
    if missing:
        raise SenderMissing(
            "Set the sender identity before drafting: every message carries the sender's name, "
            "company and postal address (PATCH /v1/drafting/sender).",
            errors=[{"field": f"sender.{name}", "reason": "not set"} for name in missing],
        )
    return Sender(
        name=str(values["name"]),
        company=str(values["company"]),
        postal_address=str(values["postal_address"]),
        email=values.get("email"),
        phone=values.get("phone"),
    )


async def set_sender(
    session: AsyncSession, actor: Principal, changes: Mapping[str, str | None], *, now: datetime
) -> dict[str, str | None]:
    tenant = await session.scalar(
        select(Tenant).where(Tenant.id == actor.tenant_id).with_for_update()
    )
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    before = sender_settings(tenant)
    after = {**before, **{k: (v.strip() or None) if v else None for k, v in changes.items()}}
    if after == before:
        return after
    tenant.settings = {**(tenant.settings or {}), "sender": after}
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "drafting.sender_changed",
                target_type="tenant",
                target_id=actor.tenant_id,
                fields=sorted(k for k in after if after[k] != before[k]),
            )
        ],
        now=now,
    )
    return after


# --- evidence ----------------------------------------------------------------------------------


async def lead_evidence(session: AsyncSession, lead: Lead, *, now: datetime) -> dict[str, Evidence]:
    """The lead's facts as provenance records them, one `Evidence` per field."""
    rows = await session.execute(
        select(LeadObservation, Source.name)
        .join(Source, Source.id == LeadObservation.source_id)
        .where(LeadObservation.lead_id == lead.id)
        .order_by(LeadObservation.observed_at, LeadObservation.id)
    )
    observations = [
        Observation(item.field, item.value, item.raw_value, source, item.observed_at)
        for observation, source in rows
        for item in observation.field_observations()
        if item.field in LEAD_FIELDS and item.value
    ]
    verified = [field for flag, field in VERIFIED_FLAGS.items() if flag in (lead.flags or ())]
    return evidence_from(observations, now=now, verified=verified)


# --- templates ---------------------------------------------------------------------------------


def as_template(row: MessageTemplateRow) -> MessageTemplate:
    return MessageTemplate(
        id=str(row.id),
        channel=Channel(row.channel),
        subject=row.subject,
        body=row.body,
        tone=Tone(row.tone) if row.tone else None,
    )


def template_problems(template: MessageTemplate) -> list[dict[str, str]]:
    """`check_template` as field errors for a problem+json answer."""
    problems = check_template(template)
    return [
        {"field": problem.split(":", 1)[0] if ":" in problem else "body", "reason": problem}
        for problem in problems
    ]


async def pick_template(
    session: AsyncSession, channel: Channel, tone: Tone, wanted: str | None
) -> MessageTemplate:
    """The named template, else the tenant's newest active one for the channel (same tone
    first), else the built-in one."""
    if wanted and wanted.startswith(BUILTIN):
        name = wanted.removeprefix(BUILTIN)
        builtin = BUILTIN_TEMPLATES.get(name)
        if builtin is None:
            example = BUILTIN + default_template(channel, tone).id
            raise TemplateNotFound(f"No built-in template {name!r}; for example {example!r}.")
        if builtin.channel is not channel:
            raise ValidationFailed(
                "The template is for another channel.",
                errors=[{"field": "template", "reason": f"it is for {builtin.channel}"}],
            )
        return builtin
    if wanted:
        try:
            template_id = uuid.UUID(wanted)
        except ValueError:
            raise ValidationFailed(
                "Unknown template.",
                errors=[{"field": "template", "reason": "a template id or builtin:<name>"}],
            ) from None
        row = await session.get(MessageTemplateRow, template_id)
        if row is None:
            raise TemplateNotFound()
        if row.channel != channel:
            raise ValidationFailed(
                "The template is for another channel.",
                errors=[{"field": "template", "reason": f"it is for {row.channel}"}],
            )
        return as_template(row)
    rows = list(
        await session.scalars(
            select(MessageTemplateRow)
            .where(MessageTemplateRow.channel == channel, MessageTemplateRow.active)
            .order_by(MessageTemplateRow.updated_at.desc())
        )
    )
    for row in sorted(rows, key=lambda r: r.tone != tone):  # stable: newest first within
        return as_template(row)
    return default_template(channel, tone)


# --- generation --------------------------------------------------------------------------------


def _problem_text(problems: list[Problem]) -> str:
    return "; ".join(
        f"{p.kind} “{p.span}” at {p.start}–{p.end}: {p.detail}" if p.span else p.detail
        for p in problems[:5]
    )


async def _llm_draft(
    drafter: LlmDrafter,
    request: DraftRequest,
    template_draft: composer.Draft,
    evidence: Mapping[str, Evidence],
    sender: Sender,
    first_message: bool,
    now: datetime,
) -> tuple[composer.Draft | None, str]:
    """The model's draft when it passes validation, else None; the note says what happened."""
    cta = cta_text(request.cta, request.tone)
    facts = {f: evidence[f].value for f in PROMPT_FIELDS if f in evidence}
    messages = build_messages(
        channel=request.channel.value,
        tone=request.tone.value,
        length=request.length.value,
        cta=cta,
        facts=facts,
        sender_name=sender.name,
        sender_company=sender.company,
        instructions=request.instructions,
    )
    result = await drafter.draft(messages)
    model = result.model or drafter.settings.model
    if not result.ok or result.text is None:
        return None, f"LLM draft not used ({result.error}); template draft instead."
    subject: str | None = None
    text = result.text.strip()
    if request.channel is Channel.EMAIL:
        subject, text = parse_email(result.text)
        subject = subject or template_draft.subject
    room = composer.BODY_LIMITS[request.channel] - composer.compliance_length(
        request.channel, sender, first_message=first_message
    )
    values = {field: item.value for field, item in evidence.items()}
    allowed = [sender.name, sender.company, cta]
    problems = validate(
        text,
        channel=request.channel.value,
        evidence_values=values,
        allowed=allowed,
        required=[cta],
        max_length=room,
    )
    if subject is not None and subject != template_draft.subject:
        problems += validate(
            subject,
            channel="email subject",
            evidence_values=values,
            allowed=allowed,
            max_length=composer.SUBJECT_LIMIT,
        )
    if problems:
        return None, f"LLM draft rejected: {_problem_text(problems)}. Template draft instead."
    try:
        draft = composer.compose_written(
            subject,
            text,
            evidence,
            sender=sender,
            channel=request.channel,
            tone=request.tone,
            length=request.length,
            cta=request.cta,
            first_message=first_message,
            now=now,
            writer=f"llm:{model}",
        )
    except ValueError as exc:  # the reserved placeholder, or over the limit
        return None, f"LLM draft rejected: {exc}. Template draft instead."
    return draft, f"Written by {model} in {result.elapsed:.1f} s; every fact checked."


def revision_content(draft: composer.Draft) -> approvals.RevisionContent:
    sentences = [s.as_dict() for s in draft.sentences]
    sentences += [{**s.as_dict(), "part": "subject"} for s in draft.subject_sentences]
    return approvals.RevisionContent(
        subject=draft.subject,
        body=draft.body,
        sentences=sentences,
        gaps=list(draft.gaps),
        compliance=list(draft.compliance),
    )


async def _first_message(session: AsyncSession, lead_id: uuid.UUID, channel: Channel) -> bool:
    sent = await session.scalar(
        select(
            exists().where(
                Draft.lead_id == lead_id, Draft.channel == channel, Draft.status == DraftStatus.SENT
            )
        )
    )
    return not sent


async def generate(
    session: AsyncSession,
    actor: Principal,
    request: DraftRequest,
    *,
    drafter: LlmDrafter | None,
    policy: approvals.Policy,
    now: datetime,
) -> Draft:
    """Draft a message for a lead and store it as revision 1 (submitted if asked)."""
    lead = await session.get(Lead, request.lead_id)
    if lead is None:
        raise NotFound("The lead does not exist.")
    blockers = await capture.contact_blockers(session, lead.id)
    if blockers:
        raise NotContactable(
            "This lead may not be contacted: " + ", ".join(blockers) + ".",
            errors=[{"field": "lead_id", "reason": reason} for reason in blockers],
        )
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    sender = sender_of(tenant)
    try:
        cta_text(request.cta, request.tone)
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "cta", "reason": str(exc)}]) from None
    template = await pick_template(session, request.channel, request.tone, request.template)
    evidence = await lead_evidence(session, lead, now=now)
    first = (
        request.first_message
        if request.first_message is not None
        else await _first_message(session, lead.id, request.channel)
    )
    try:
        written = composer.compose(
            template,
            evidence,
            sender=sender,
            channel=request.channel,
            tone=request.tone,
            length=request.length,
            cta=request.cta,
            first_message=first,
            now=now,
        )
    except composer.TemplateRejected as exc:
        raise ValidationFailed(
            "The template cannot be used.",
            errors=[{"field": "template", "reason": problem} for problem in exc.problems],
        ) from None
    except composer.DraftTooLong as exc:
        raise ValidationFailed(
            "The draft is too long for the channel.",
            errors=[{"field": exc.part, "reason": str(exc)}],
        ) from None
    except ValueError as exc:  # e.g. the template wrote the reserved unsubscribe placeholder
        raise ValidationFailed(
            "The template cannot be used.", errors=[{"field": "template", "reason": str(exc)}]
        ) from None

    problems = composer.check_draft(written)
    if problems:
        raise ValidationFailed(
            "The template's draft is not usable.",
            errors=[{"field": "template", "reason": p.detail} for p in problems],
        )

    origin, note = "template", None
    if request.use_llm and drafter is None:
        note = "LLM drafting is off (no LEADRELAY_LLM_BASE_URL / LEADRELAY_LLM_MODEL)."
    elif request.use_llm and drafter is not None:
        llm_draft, note = await _llm_draft(drafter, request, written, evidence, sender, first, now)
        if llm_draft is not None:
            written, origin = llm_draft, "llm"

    draft = Draft(
        tenant_id=actor.tenant_id,
        lead_id=lead.id,
        channel=request.channel.value,
        template=written.template_id if origin == "llm" else _template_ref(template),
        tone=request.tone.value,
        length=request.length.value,
        cta=request.cta,
        first_message=first,
        origin=origin,
        llm_note=note,
        status=DraftStatus.DRAFT,
        created_by_type=actor.kind,
        created_by_id=str(actor.id) if actor.id else None,
        created_by=actor.name,
        created_at=now,
    )
    session.add(draft)
    await session.flush()
    revision = await approvals.add_revision(
        session, actor, draft, revision_content(written), now=now
    )
    if revision.content_sha256 != written.content_sha256:
        # Two hash rules must agree, or an approved draft could never be sent.
        raise RuntimeError("draft and revision hash rules disagree")
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "draft.created",
                target_type="draft",
                target_id=draft.id,
                lead_id=str(lead.id),
                channel=draft.channel,
                origin=origin,
                template=draft.template,
                gaps=list(written.gaps),
                sha256=written.content_sha256,
            )
        ],
        now=now,
    )
    if request.submit:
        await approvals.submit(session, actor, draft.id, policy=policy, now=now)
    return draft


def _template_ref(template: MessageTemplate) -> str:
    try:
        uuid.UUID(template.id)
    except ValueError:
        return BUILTIN + template.id
    return template.id
