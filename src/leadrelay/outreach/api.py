"""Outreach routes: messages (an approved draft through the policy guard to a channel), the
tenant's outreach policy (dry-run, caps), suppressions, do-not-call lists, consent records, and
the public unsubscribe page with its RFC 8058 one-click POST."""

from __future__ import annotations

import codecs
import tempfile
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select

from leadrelay.capture.models import Lead
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import NotFound
from leadrelay.core.schemas import Input
from leadrelay.core.security import app_secret_keys
from leadrelay.identity.deps import (
    CanManageSuppressions,
    CanReadOutreach,
    CanSend,
    CanSetOutreachPolicy,
    SessionDep,
)
from leadrelay.identity.service import Principal, get_tenant, system_principal
from leadrelay.outreach import campaigns, service, suppression
from leadrelay.outreach.models import (
    Campaign,
    CampaignMember,
    CampaignRun,
    ConsentState,
    DncEntry,
    Message,
    MessageKind,
    MessageStatus,
    Suppression,
    SuppressionReason,
)
from leadrelay.outreach.unsubscribe import read_token

router = APIRouter(prefix="/v1", tags=["outreach"])
unsubscribe_router = APIRouter(tags=["unsubscribe"])
UNSUBSCRIBE_PREFIX = "/unsubscribe/"

DNC_UPLOAD_PATH = "/v1/dnc/import"
DNC_UPLOAD_LIMIT = 200 * 1024 * 1024  # a national registry extract, streamed to disk
Channel = Literal["email", "sms", "whatsapp", "voice"]


def keys_of(request: Request) -> str:
    """The secret keys addresses are hashed with, read once per process."""
    return app_secret_keys(request.app.state)


async def _region(session: SessionDep, tenant_id: uuid.UUID, given: str | None) -> str | None:
    if given:
        return given.upper()
    settings = (await get_tenant(session, tenant_id)).settings or {}
    region = settings.get("default_country")
    return str(region) if region else None


class SuppressionIn(Input):
    kind: Literal["email", "phone"]
    address: str = Field(min_length=3, max_length=320)
    reason: SuppressionReason = SuppressionReason.OPTED_OUT
    note: str | None = Field(default=None, max_length=1000)
    default_region: str | None = Field(
        default=None, min_length=2, max_length=2, description="for numbers without +country"
    )


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    address_kind: str
    reason: str
    source: str
    note: str | None
    created_by: str
    created_at: datetime


class SuppressionCheck(BaseModel):
    suppressed: bool
    reasons: list[str]
    dnc_lists: list[str]


class DncImportOut(BaseModel):
    list_name: str
    rows: int
    added: int
    already_listed: int
    rejected: list[dict[str, object]]


class DncListOut(BaseModel):
    list_name: str
    numbers: int


class ConsentIn(Input):
    channel: Channel
    state: ConsentState
    purpose: str = Field(min_length=1, max_length=200)
    method: str = Field(min_length=1, max_length=200, description="web form, reply STOP, call…")
    evidence: str | None = Field(default=None, max_length=5000)


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    state: str
    purpose: str
    method: str
    evidence: str | None
    recorded_by: str
    recorded_at: datetime


@router.get("/suppressions")
async def list_suppressions(
    session: SessionDep,
    _: CanReadOutreach,
    kind: Literal["email", "phone"] | None = None,
    reason: SuppressionReason | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[SuppressionOut]:
    """Newest first. Addresses are kept only as keyed hashes: check one with `/check`."""
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id)
    if kind:
        query = query.where(Suppression.address_kind == kind)
    if reason:
        query = query.where(Suppression.reason == reason)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return [SuppressionOut.model_validate(r) for r in rows]


@router.get("/suppressions/check")
async def check_address(
    request: Request,
    session: SessionDep,
    actor: CanReadOutreach,
    kind: Literal["email", "phone"],
    address: Annotated[str, Query(min_length=3, max_length=320)],
    default_region: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> SuppressionCheck:
    region = await _region(session, actor.tenant_id, default_region)
    normalized = suppression.normalized_address(kind, address, default_region=region)
    keys = keys_of(request)
    email, phone = (normalized, None) if kind == "email" else (None, normalized)
    reasons = await suppression.suppression_reasons(session, keys, email=email, phone=phone)
    lists = await suppression.dnc_lists(session, keys, phone)
    return SuppressionCheck(suppressed=bool(reasons), reasons=reasons, dnc_lists=lists)


@router.post("/suppressions", status_code=status.HTTP_201_CREATED)
async def add_suppression(
    body: SuppressionIn, request: Request, session: SessionDep, actor: CanManageSuppressions
) -> SuppressionOut:
    """Record an opt-out (or a bounce, a complaint): it holds before the next send and until
    the person opts back in. Idempotent."""
    region = await _region(session, actor.tenant_id, body.default_region)
    normalized = suppression.normalized_address(body.kind, body.address, default_region=region)
    row = await suppression.suppress(
        session,
        actor,
        keys=keys_of(request),
        kind=body.kind,
        normalized=normalized,
        reason=body.reason,
        source="api",
        note=body.note,
        now=utcnow(),
    )
    return SuppressionOut.model_validate(row)


@router.delete("/suppressions/{suppression_id}", status_code=status.HTTP_204_NO_CONTENT)
async def lift_suppression(
    suppression_id: uuid.UUID, session: SessionDep, actor: CanManageSuppressions
) -> Response:
    """The person opted back in; audited."""
    await suppression.lift(session, actor, suppression_id, now=utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/dnc")
async def dnc_lists(session: SessionDep, _: CanReadOutreach) -> list[DncListOut]:
    rows = await session.execute(
        select(DncEntry.list_name, func.count())
        .group_by(DncEntry.list_name)
        .order_by(DncEntry.list_name)
    )
    return [DncListOut(list_name=name, numbers=count) for name, count in rows]


@router.post("/dnc/import")
async def import_dnc(
    request: Request,
    session: SessionDep,
    actor: CanManageSuppressions,
    list_name: Annotated[str, Form(min_length=1, max_length=100)],
    file: Annotated[UploadFile, File(description="one number per line, or CSV with `phone`")],
    default_region: Annotated[str | None, Form(min_length=2, max_length=2)] = None,
) -> DncImportOut:
    """A do-not-call registry file (e.g. a national list's CSV), streamed; every rejected line
    is reported with its number and reason."""
    region = await _region(session, actor.tenant_id, default_region)
    with tempfile.TemporaryDirectory() as folder:
        path = FilePath(folder) / "dnc.csv"
        with path.open("wb") as handle:
            while block := await file.read(1 << 20):
                handle.write(block)
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        with path.open("rb") as raw:
            lines = (decoder.decode(line) for line in raw)
            report = await suppression.import_dnc(
                session,
                actor,
                keys=keys_of(request),
                list_name=list_name.strip(),
                lines=lines,
                default_region=region,
                now=utcnow(),
            )
    return DncImportOut(
        list_name=report.list_name,
        rows=report.rows,
        added=report.added,
        already_listed=report.already_listed,
        rejected=report.rejected,
    )


async def _lead(session: SessionDep, lead_id: uuid.UUID) -> Lead:
    lead = await session.get(Lead, lead_id)
    if lead is None:
        raise NotFound("The lead does not exist.")
    return lead


@router.get("/leads/{lead_id}/consents")
async def list_consents(
    lead_id: uuid.UUID, session: SessionDep, _: CanReadOutreach
) -> list[ConsentOut]:
    """Every consent given or withdrawn, newest first: when, how, for what, on which channel."""
    await _lead(session, lead_id)
    return [ConsentOut.model_validate(c) for c in await suppression.consents_of(session, lead_id)]


@router.post("/leads/{lead_id}/consents", status_code=status.HTTP_201_CREATED)
async def record_consent(
    lead_id: uuid.UUID, body: ConsentIn, session: SessionDep, actor: CanManageSuppressions
) -> ConsentOut:
    await _lead(session, lead_id)
    row = await suppression.record_consent(
        session,
        actor,
        lead_id=lead_id,
        channel=body.channel,
        state=body.state,
        purpose=body.purpose,
        method=body.method,
        evidence=body.evidence,
        now=utcnow(),
    )
    return ConsentOut.model_validate(row)


# --- messages ----------------------------------------------------------------------------------


class MessageIn(Input):
    draft_id: uuid.UUID
    kind: Literal["one_to_one", "transactional", "test"] = "one_to_one"


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    draft_id: uuid.UUID | None
    kind: str
    channel: str
    provider: str
    dry_run: bool
    status: str
    recipient_domain: str | None
    recipient_country: str | None
    subject: str | None
    body: str
    content_sha256: str
    policy_trace: list[dict[str, object]]
    blocked_by: str | None
    block_reason: str | None
    retry_at: datetime | None
    attempts: int
    provider_message_id: str | None
    error: str | None
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    delivery_status: str | None = Field(
        description="The furthest state providers reported (only moves forward)"
    )
    delivery_updated_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    replied_at: datetime | None


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": MessageOut, "description": "The message this key already made"}},
)
async def send_message(
    body: MessageIn,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CanSend,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> MessageOut:
    """Hand an approved draft to the policy guard: the answer says queued (delivery follows),
    deferred (a cap or window; retried at `retry_at`) or blocked (which check, and why), with
    the whole trace. Dry-run by default: the message is recorded, nothing leaves."""
    message, created = await service.queue_draft(
        session,
        actor,
        body.draft_id,
        settings=request.app.state.settings,
        keys=keys_of(request),
        kind=MessageKind(body.kind),
        idempotency_key=idempotency_key,
        now=utcnow(),
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return MessageOut.model_validate(message)


@router.get("/messages")
async def list_messages(
    session: SessionDep,
    _: CanReadOutreach,
    message_status: Annotated[MessageStatus | None, Query(alias="status")] = None,
    channel: Literal["email", "sms", "whatsapp", "voice"] | None = None,
    lead_id: uuid.UUID | None = None,
    dry_run: bool | None = None,
    blocked_by: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[MessageOut]:
    """Newest first; `dry_run=true` is the dry-run outbox."""
    query = select(Message).order_by(Message.created_at.desc(), Message.id)
    for column, value in (
        (Message.status, message_status),
        (Message.channel, channel),
        (Message.lead_id, lead_id),
        (Message.dry_run, dry_run),
        (Message.blocked_by, blocked_by),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return [MessageOut.model_validate(m) for m in rows]


@router.get("/messages/{message_id}")
async def get_message(message_id: uuid.UUID, session: SessionDep, _: CanReadOutreach) -> MessageOut:
    message = await session.get(Message, message_id)
    if message is None:
        raise service.MessageNotFound()
    return MessageOut.model_validate(message)


Weekday = Annotated[int, Field(ge=0, le=6)]


class WindowIn(Input):
    """Local hours on the recipient's clock, from `start` until `end` (after it, or 24:00)."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["10:00"])
    end: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", examples=["16:00"])


class CallWindowIn(WindowIn):
    days: list[Weekday] = Field(
        default=[0, 1, 2, 3, 4], min_length=1, max_length=7, description="0 = Monday"
    )


class MessageWindowIn(WindowIn):
    days: list[Weekday] = Field(
        default=[0, 1, 2, 3, 4, 5, 6], min_length=1, max_length=7, description="0 = Monday"
    )


Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]


class OutreachPolicyIn(Input):
    dry_run: bool | None = None
    daily_caps: dict[Channel, Annotated[int, Field(ge=0, le=1_000_000)]] | None = None
    domain_hourly_cap: int | None = Field(default=None, ge=0, le=100_000)
    cooldown_days: int | None = Field(default=None, ge=0, le=3650)
    country_call_caps: dict[Country, Annotated[int, Field(ge=0, le=1_000_000)]] | None = Field(
        default=None, description="calls a day per recipient country (replaces the map)"
    )
    country_call_windows: dict[Country, CallWindowIn] | None = Field(
        default=None, description="local call hours per country (replaces the map)"
    )
    country_message_windows: dict[Country, MessageWindowIn] | None = Field(
        default=None,
        description="local SMS and WhatsApp hours per country, instead of the default quiet "
        "hours (replaces the map)",
    )
    confirmation: str | None = Field(
        default=None,
        max_length=100,
        description="to leave dry-run, raise a limit or widen a country's hours beyond the "
        f'default, type "{service.LIVE_CONFIRMATION}"',
    )
    accept_domain_risk: bool = Field(
        default=False,
        description="leave dry-run although a sending domain fails SPF, DKIM or DMARC (audited)",
    )


class OutreachPolicyOut(BaseModel):
    dry_run: bool
    tenant_dry_run: bool
    forced_by_settings: bool
    daily_caps: dict[str, int]
    domain_hourly_cap: int
    cooldown_days: int
    timezone: str
    country_call_caps: dict[str, int]
    country_call_windows: dict[str, dict[str, object]]
    country_message_windows: dict[str, dict[str, object]]


def _policy_out(view: service.OutreachPolicy) -> OutreachPolicyOut:
    return OutreachPolicyOut(
        dry_run=view.dry_run,
        tenant_dry_run=view.tenant_dry_run,
        forced_by_settings=view.forced_by_settings,
        daily_caps=dict(view.daily_caps),
        domain_hourly_cap=view.domain_hourly_cap,
        cooldown_days=view.cooldown_days,
        timezone=view.timezone,
        country_call_caps=dict(view.country_call_caps),
        country_call_windows={k: dict(v) for k, v in view.country_call_windows.items()},
        country_message_windows={k: dict(v) for k, v in view.country_message_windows.items()},
    )


@router.get("/outreach/policy")
async def get_outreach_policy(
    request: Request, session: SessionDep, actor: CanReadOutreach
) -> OutreachPolicyOut:
    """Dry-run (on by default; `LEADRELAY_DRY_RUN=true` keeps every tenant in it), daily caps,
    the per-domain e-mail throttle, the cooldown between contacts, and per country a call cap,
    call hours and SMS/WhatsApp hours."""
    tenant = await get_tenant(session, actor.tenant_id)
    return _policy_out(service.outreach_policy(tenant, request.app.state.settings))


@router.patch("/outreach/policy")
async def set_outreach_policy(
    body: OutreachPolicyIn, request: Request, session: SessionDep, actor: CanSetOutreachPolicy
) -> OutreachPolicyOut:
    """Leaving dry-run, raising a limit above its default or giving a country hours wider than
    its channel's default needs the typed confirmation; audited with before and after."""
    view = await service.set_outreach_policy(
        session,
        actor,
        request.app.state.settings,
        dry_run=body.dry_run,
        daily_caps={str(k): v for k, v in body.daily_caps.items()} if body.daily_caps else None,
        domain_hourly_cap=body.domain_hourly_cap,
        cooldown_days=body.cooldown_days,
        confirmation=body.confirmation,
        now=utcnow(),
        country_call_caps=body.country_call_caps,
        country_call_windows=_windows(body.country_call_windows),
        country_message_windows=_windows(body.country_message_windows),
        accept_domain_risk=body.accept_domain_risk,
    )
    return _policy_out(view)


def _windows(given: Mapping[str, WindowIn] | None) -> dict[str, dict[str, object]] | None:
    return None if given is None else {k: w.model_dump() for k, w in given.items()}


# --- unsubscribe (public: the link in every e-mail) ----------------------------------------------

_DONE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribed</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;">
<h1>You are unsubscribed</h1><p>{detail}</p></body></html>"""


async def _unsubscribe(request: Request, token: str) -> str:
    keys = keys_of(request)
    tenant_id, message_id = read_token(service.unsubscribe_secret(keys), token)
    async with request.app.state.db.session(tenant_id) as session:
        message = await session.get(Message, message_id)
        if message is None:
            raise service.MessageNotFound("This link belongs to no message.")
        actor = system_principal(tenant_id)
        email = message.channel == "email"
        await suppression.suppress(
            session,
            actor,
            keys=keys,
            kind="email" if email else "phone",
            normalized=message.recipient.casefold() if email else message.recipient,
            reason=SuppressionReason.OPTED_OUT,
            source="unsubscribe link",
            now=utcnow(),
        )
        await suppression.record_consent(
            session,
            actor,
            lead_id=message.lead_id,
            channel=message.channel,
            state=ConsentState.WITHDRAWN,
            purpose="all outreach",
            method="unsubscribe link",
            evidence=f"message {message.id}",
            now=utcnow(),
        )
        await campaigns.stop_for_lead(session, message.lead_id, "opted out", now=utcnow())
    return "We will not write to this address again."


@unsubscribe_router.get(UNSUBSCRIBE_PREFIX + "{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: Annotated[str, Path(max_length=200)], request: Request) -> str:
    """The link in the footer: the opt-out is recorded at once (no second click, no login)."""
    return _DONE_PAGE.format(detail=await _unsubscribe(request, token))


@unsubscribe_router.post(UNSUBSCRIBE_PREFIX + "{token}")
async def unsubscribe_one_click(
    token: Annotated[str, Path(max_length=200)], request: Request
) -> Response:
    """RFC 8058 one-click: the mail provider POSTs `List-Unsubscribe=One-Click`."""
    await _unsubscribe(request, token)
    return Response(status_code=status.HTTP_200_OK, content="unsubscribed", media_type="text/plain")


# --- campaigns ---------------------------------------------------------------------------------


class AudienceIn(Input):
    """A saved lead filter, as `GET /v1/leads` takes it (only leads with status `new`, i.e.
    contactable, unless `status` says otherwise)."""

    status: Literal["new"] | None = None
    source_id: uuid.UUID | None = None
    flag: str | None = Field(default=None, max_length=40)
    q: str | None = Field(default=None, max_length=200)
    min_score: int | None = Field(default=None, ge=0, le=100)
    max_score: int | None = Field(default=None, ge=0, le=100)
    owner: uuid.UUID | None = None
    unassigned: bool = False


class StepIn(Input):
    channel: Channel
    delay_days: int = Field(default=0, ge=0, le=365, description="after the previous step")
    tone: Literal["formal", "friendly", "direct"] = "friendly"
    length: Literal["short", "medium", "long"] = "medium"
    cta: str = Field(default="book_call", max_length=40)
    template: str | None = Field(default=None, max_length=120)
    use_llm: bool = True
    if_no_reply: bool = Field(
        default=True,
        description="run only if the lead has not replied since joining (later steps)",
    )


class CampaignIn(Input):
    name: str = Field(min_length=1, max_length=200)
    audience: AudienceIn = Field(default_factory=AudienceIn)
    steps: list[StepIn] = Field(min_length=1, max_length=20)
    send_time: str = Field(default="10:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str | None = Field(default=None, max_length=64, description="default: tenant's")
    report_to: str | None = Field(
        default=None, max_length=320, description="the operator's e-mail: each run's report"
    )


class CampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    status: str
    audience: dict[str, object]
    steps: list[dict[str, object]]
    send_time: str
    timezone: str
    halted_reason: str | None
    last_run_on: str | None
    report_to: str | None
    created_by: str
    created_at: datetime


class CampaignRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    campaign_id: uuid.UUID
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    report: dict[str, object]
    error: str | None
    report_email: dict[str, object] | None


class CampaignDetail(BaseModel):
    campaign: CampaignOut
    members: dict[str, int]  # by state
    runs: list[CampaignRunOut]  # newest first


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    step: int
    due_at: datetime
    state: str
    stop_reason: str | None
    draft_id: uuid.UUID | None
    last_message_id: uuid.UUID | None
    joined_at: datetime


async def _detail(session: SessionDep, campaign: Campaign) -> CampaignDetail:
    counts = await session.execute(
        select(CampaignMember.state, func.count())
        .where(CampaignMember.campaign_id == campaign.id)
        .group_by(CampaignMember.state)
    )
    runs = await session.scalars(
        select(CampaignRun)
        .where(CampaignRun.campaign_id == campaign.id)
        .order_by(CampaignRun.started_at.desc(), CampaignRun.id)
        .limit(20)
    )
    return CampaignDetail(
        campaign=CampaignOut.model_validate(campaign),
        members={str(state): int(count) for state, count in counts},
        runs=[CampaignRunOut.model_validate(r) for r in runs],
    )


@router.post("/campaigns", status_code=status.HTTP_201_CREATED)
async def create_campaign(body: CampaignIn, session: SessionDep, actor: CanSend) -> CampaignDetail:
    """A draft campaign: activate it to run daily at `send_time` (local). Each step drafts
    for review; approved drafts go through the policy guard like every other message."""
    tenant = await get_tenant(session, actor.tenant_id)
    campaign = await campaigns.create(
        session,
        actor,
        name=body.name,
        audience=body.audience.model_dump(mode="json", exclude_defaults=True),
        steps=[step.model_dump() for step in body.steps],
        send_time=body.send_time,
        timezone=body.timezone or str((tenant.settings or {}).get("timezone") or "UTC"),
        now=utcnow(),
        report_to=body.report_to,
    )
    return await _detail(session, campaign)


@router.get("/campaigns")
async def list_campaigns(session: SessionDep, _: CanReadOutreach) -> list[CampaignOut]:
    rows = await session.scalars(select(Campaign).order_by(Campaign.created_at.desc()))
    return [CampaignOut.model_validate(c) for c in rows]


@router.get("/campaigns/{campaign_id}")
async def get_campaign(
    campaign_id: uuid.UUID, session: SessionDep, _: CanReadOutreach
) -> CampaignDetail:
    """The campaign, its members by state and its last runs' reports."""
    return await _detail(session, await campaigns.get(session, campaign_id))


async def _transition(
    session: SessionDep, actor: Principal, campaign_id: uuid.UUID, action: str
) -> CampaignDetail:
    campaign = await campaigns.transition(session, actor, campaign_id, action, now=utcnow())
    return await _detail(session, campaign)


@router.post("/campaigns/{campaign_id}/activate")
async def activate_campaign(
    campaign_id: uuid.UUID, session: SessionDep, actor: CanSend
) -> CampaignDetail:
    return await _transition(session, actor, campaign_id, "activate")


@router.post("/campaigns/{campaign_id}/pause")
async def pause_campaign(
    campaign_id: uuid.UUID, session: SessionDep, actor: CanSend
) -> CampaignDetail:
    return await _transition(session, actor, campaign_id, "pause")


@router.post("/campaigns/{campaign_id}/resume")
async def resume_campaign(
    campaign_id: uuid.UUID, session: SessionDep, actor: CanSend
) -> CampaignDetail:
    """Also after a halt, once its cause is fixed."""
    return await _transition(session, actor, campaign_id, "resume")


@router.post("/campaigns/{campaign_id}/stop")
async def stop_campaign(
    campaign_id: uuid.UUID, session: SessionDep, actor: CanSend
) -> CampaignDetail:
    return await _transition(session, actor, campaign_id, "stop")


@router.post("/campaigns/{campaign_id}/run")
async def run_campaign(
    campaign_id: uuid.UUID, request: Request, session: SessionDep, actor: CanSend
) -> CampaignRunOut:
    """Run now, outside the daily schedule; the report comes back."""
    from leadrelay.drafting.api import drafter_of

    run = await campaigns.run(
        session,
        actor,
        campaign_id,
        settings=request.app.state.settings,
        keys=keys_of(request),
        drafter=drafter_of(request),
        trigger="manual",
        now=utcnow(),
    )
    return CampaignRunOut.model_validate(run)


@router.get("/campaigns/{campaign_id}/members")
async def campaign_members(
    campaign_id: uuid.UUID,
    session: SessionDep,
    _: CanReadOutreach,
    state: Literal["active", "completed", "stopped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[MemberOut]:
    await campaigns.get(session, campaign_id)
    query = select(CampaignMember).where(CampaignMember.campaign_id == campaign_id)
    if state:
        query = query.where(CampaignMember.state == state)
    rows = await session.scalars(
        query.order_by(CampaignMember.joined_at, CampaignMember.id).limit(limit).offset(offset)
    )
    return [MemberOut.model_validate(m) for m in rows]
