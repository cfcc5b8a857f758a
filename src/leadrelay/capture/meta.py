"""Meta's webhooks and the Lead Ads adapter.

Meta Lead Ads and the WhatsApp Cloud API share one webhook mechanism (Graph API webhooks): a
GET verification challenge (`hub.mode`, `hub.verify_token`, `hub.challenge`), then signed POSTs
(`X-Hub-Signature-256`, HMAC-SHA256 of the raw body with the app secret) carrying
`{"object": …, "entry": [{"changes": [{"field": …, "value": …}]}]}`. This module holds that
shared part, the per-source provider configuration (encrypted in `Source.config_encrypted`),
and the Lead Ads side: a leadgen change names a lead (`leadgen_id`) that a job fetches from
the Graph API (`GET /{leadgen_id}`) and captures through `intake.ingest`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from annotated_types import MaxLen
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture import intake, sources
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.models import ExternalId, Lead, LeadObservation, LeadStatus, Source
from leadrelay.capture.schemas import LeadIn
from leadrelay.compliance.audit import AuditEntry, record
from leadrelay.core.db import set_tenant
from leadrelay.core.errors import Forbidden, ValidationFailed
from leadrelay.core.jobs import defer
from leadrelay.core.jobs_models import WebhookReceipt
from leadrelay.core.logging import get_logger
from leadrelay.core.schemas import contains_nul
from leadrelay.core.security import SecretBox
from leadrelay.core.signatures import verify_meta
from leadrelay.identity.service import Principal
from leadrelay.inbound.service import InvalidPayload, InvalidSignature

log = get_logger("leadrelay.capture.meta")

META_FETCH_TASK = "capture.meta_fetch_lead"
PAGE_OBJECT = "page"
LEADGEN_FIELD = "leadgen"
MAX_DELIVERY_ID = 200  # webhook_receipts.delivery_id
GRAPH_TIMEOUT_SECONDS = 10.0
# Graph error codes that mean "try again later" even when answered with a 4xx (Meta's
# "Handling Errors" guide: unknown/service errors and the rate limits).
TRANSIENT_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})
# Graph ids are numeric strings; a little slack for test tools, never anything exotic.
_GRAPH_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


class Provider(StrEnum):
    META_LEAD_ADS = "meta_lead_ads"
    WHATSAPP = "whatsapp"


# webhook_receipts.provider holds at most 40 characters: a short prefix and the source's hex id.
_RECEIPT_PREFIX = {Provider.META_LEAD_ADS: "meta", Provider.WHATSAPP: "wa"}


def receipt_provider(provider: Provider, source_id: uuid.UUID) -> str:
    return f"{_RECEIPT_PREFIX[provider]}:{source_id.hex}"


class VerificationFailed(Forbidden):
    """The webhook verification request does not match this source's verify token."""

    code = "verification-failed"


class UnexpectedObject(InvalidPayload):
    """The webhook is about an object this endpoint does not receive."""

    code = "unexpected-object"


class ProviderNotConfigured(ValidationFailed):
    """The source has no configuration for this provider."""

    code = "provider-not-configured"


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A source's provider secrets; stored as JSON encrypted with the app's SecretBox."""

    provider: Provider
    app_secret: str
    verify_token: str
    access_token: str = ""
    graph_base_url: str | None = None  # None: the LEADRELAY_META_GRAPH_BASE_URL default

    def encrypt(self, box: SecretBox) -> bytes:
        return box.encrypt(json.dumps(asdict(self), sort_keys=True))

    @classmethod
    def decrypt(cls, box: SecretBox, token: bytes) -> ProviderConfig:
        """Raises ValueError when the token cannot be decrypted or holds something else."""
        data = json.loads(box.decrypt(token))
        try:
            return cls(
                provider=Provider(data["provider"]),
                app_secret=str(data["app_secret"]),
                verify_token=str(data["verify_token"]),
                access_token=str(data.get("access_token") or ""),
                graph_base_url=str(data.get("graph_base_url") or "") or None,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError("not a provider configuration") from error


def check_graph_base_url(url: str, *, allow_plain_http: bool) -> str:
    """An absolute https URL without credentials, query or fragment (http only where private
    targets are allowed, i.e. development and tests)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # "http://[::1", "https://host:99999"
        parts, port_ok = urlsplit(""), False
    schemes = {"https", "http"} if allow_plain_http else {"https"}
    if (
        not port_ok
        or parts.scheme not in schemes
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
    ):
        raise ValidationFailed(
            "the Graph API base URL must be an absolute https:// URL",
            errors=[
                {
                    "field": "graph_base_url",
                    "message": "expected https://host[/path] without query or credentials",
                    "type": "invalid_url",
                }
            ],
        )
    return url.rstrip("/")


async def update_provider_config(
    session: AsyncSession,
    actor: Principal,
    box: SecretBox,
    source_id: uuid.UUID,
    config: ProviderConfig,
    *,
    allow_plain_http: bool,
    now: datetime,
) -> tuple[Source, ProviderConfig]:
    """Replace the source's provider configuration (encrypted); audited without secrets.
    Returns the source and the configuration as stored."""
    source = await sources.access_source(session, actor, source_id)
    if config.provider == Provider.META_LEAD_ADS and not config.access_token:
        raise ValidationFailed(
            "Meta Lead Ads needs a Page access token to retrieve leads",
            errors=[
                {
                    "field": "access_token",
                    "message": "required for meta_lead_ads",
                    "type": "missing",
                }
            ],
        )
    if config.graph_base_url is not None:
        config = replace(
            config,
            graph_base_url=check_graph_base_url(
                config.graph_base_url, allow_plain_http=allow_plain_http
            ),
        )
    replaced = source.config_encrypted is not None
    source.config_encrypted = config.encrypt(box)
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "source.provider_configured",
            target_type="source",
            target_id=source.id,
            provider=config.provider.value,
            replaced=replaced,
            custom_graph_base_url=config.graph_base_url is not None,
        ),
        now=now,
    )
    return source, config


def provider_config(source: Source, box: SecretBox, provider: Provider) -> ProviderConfig:
    """The source's configuration for `provider`, or ProviderNotConfigured."""
    config: ProviderConfig | None = None
    if source.config_encrypted is not None:
        try:
            config = ProviderConfig.decrypt(box, source.config_encrypted)
        except ValueError:
            config = None
    if config is None or config.provider != provider:
        raise ProviderNotConfigured(f"source {source.name!r} is not configured for {provider}")
    return config


# --- receiving (before the tenant is known) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderSource:
    """What the receiver may know about a source before its tenant is set."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    config: ProviderConfig | None


async def find_provider_source(
    session: AsyncSession, box: SecretBox, source_id: uuid.UUID
) -> ProviderSource | None:
    """The narrow SECURITY DEFINER look-up `auth_find_provider_source`: one source's tenant
    and configuration, without a tenant context."""
    row = (
        (
            await session.execute(
                text("SELECT * FROM auth_find_provider_source(:id)"), {"id": source_id}
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    config: ProviderConfig | None = None
    if row["config_encrypted"] is not None:
        try:
            config = ProviderConfig.decrypt(box, row["config_encrypted"])
        except ValueError:
            log.warning("provider_config.unreadable", source_id=str(source_id))
    return ProviderSource(source_id, row["tenant_id"], config)


def check_verification(
    found: ProviderSource | None,
    provider: Provider,
    *,
    mode: str | None,
    verify_token: str | None,
    challenge: str | None,
) -> str:
    """The challenge to echo when this is a subscription request with the source's verify
    token (compared in constant time); VerificationFailed otherwise, whatever the reason."""
    config = found.config if found is not None else None
    expected = config.verify_token if config is not None and config.provider == provider else ""
    matches = hmac.compare_digest(expected.encode(), (verify_token or "").encode())
    if not (matches and expected and mode == "subscribe" and _CHALLENGE.fullmatch(challenge or "")):
        raise VerificationFailed()
    return str(challenge)


def check_signature(
    found: ProviderSource | None, provider: Provider, *, body: bytes, signature_header: str
) -> ProviderSource:
    """The source, when the body is signed with its app secret. An unknown source, a source
    configured for another provider and a bad signature look the same to the caller."""
    config = found.config if found is not None else None
    if (
        found is None
        or config is None
        or config.provider != provider
        or not verify_meta(
            app_secret=config.app_secret, payload=body, signature_header=signature_header
        )
    ):
        raise InvalidSignature()
    return found


async def access_receiving_source(session: AsyncSession, found: ProviderSource) -> Source:
    """Bind the request's transaction to the source's tenant and load the source."""
    await set_tenant(session, found.tenant_id)
    source = await session.get(Source, found.id)
    if source is None:  # deleted since the look-up
        raise InvalidSignature()
    return source


async def record_refused_delivery(
    session: AsyncSession,
    source: Source,
    provider: Provider,
    refusal: sources.SourceRefused,
    *,
    now: datetime,
) -> None:
    """An authentic delivery for a source that may not bring leads: refused, and audited."""
    reason = refusal.errors[0]["type"] if refusal.errors else refusal.code
    log.warning("provider_webhook.refused", provider=provider.value, reason=reason)
    await record(
        session,
        source.tenant_id,
        AuditEntry(
            "provider_webhook.refused",
            actor_type="system",
            actor_id=provider.value,
            target_type="source",
            target_id=str(source.id),
            data={"provider": provider.value, "reason": reason},
        ),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class Change:
    entry_id: str
    field: str
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notification:
    changes: list[Change]
    # What the endpoint does not take (other change fields, Messenger events…), counted.
    ignored: Counter[str] = field(default_factory=Counter)


_ENTRY_KEYS = {"id", "time", "changes", "uid", "changed_fields"}


def load_notification(body: bytes, *, expected_object: str) -> Notification:
    """Parse a Graph API webhook body; InvalidPayload (400) unless it is the JSON envelope
    of `expected_object`."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise InvalidPayload("the webhook body must be a JSON object")
    if contains_nul(payload):  # PostgreSQL's jsonb cannot hold it
        raise InvalidPayload("the JSON body must not contain NUL (\\u0000) characters")
    if payload.get("object") != expected_object:
        raise UnexpectedObject(
            f"this endpoint receives {expected_object!r} webhooks, "
            f"not {str(payload.get('object'))[:60]!r}"
        )
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise InvalidPayload("'entry' must be a list")
    changes: list[Change] = []
    ignored: Counter[str] = Counter()
    for entry in entries:
        entry_changes = entry.get("changes", []) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry_changes, list):
            raise InvalidPayload("each entry must be an object whose 'changes' is a list")
        for key, value in entry.items():
            if key not in _ENTRY_KEYS and isinstance(value, list):
                ignored[key[:40]] += len(value)
        for change in entry_changes:
            if (
                not isinstance(change, dict)
                or not isinstance(change.get("field"), str)
                or not isinstance(change.get("value"), dict)
            ):
                raise InvalidPayload("each change must have a 'field' and an object 'value'")
            changes.append(Change(str(entry.get("id", ""))[:100], change["field"], change["value"]))
    return Notification(changes, ignored)


def graph_id(value: object) -> str | None:
    """A Graph id as text (Meta sends them as JSON numbers or strings), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and _GRAPH_ID.fullmatch(value):
        return value
    return None


async def remember_deliveries(
    session: AsyncSession, provider_key: str, delivery_ids: Sequence[str]
) -> set[str]:
    """Record the delivery ids in `webhook_receipts` (shared by every process); returns the
    ones never seen before. Caller's transaction: a rolled-back request remembers nothing."""
    unique = list(dict.fromkeys(delivery_ids))
    if not unique:
        return set()
    statement = (
        pg_insert(WebhookReceipt)
        .values([{"provider": provider_key, "delivery_id": d} for d in unique])
        .on_conflict_do_nothing()
        .returning(WebhookReceipt.delivery_id)
    )
    return set((await session.execute(statement)).scalars())


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    accepted: int
    duplicates: int
    ignored: dict[str, int]


async def record_delivery(
    session: AsyncSession,
    source: Source,
    provider: Provider,
    result: DeliveryResult,
    *,
    now: datetime,
) -> None:
    """Log every delivery; audit those that brought something (accepted or replayed ids).
    Deliveries of ignored changes only (WhatsApp statuses arrive for every message sent)
    would flood the tenant's chain and serialize on its head."""
    log.info(
        "provider_webhook.received",
        provider=provider.value,
        source_id=str(source.id),
        accepted=result.accepted,
        duplicates=result.duplicates,
        ignored=result.ignored,
    )
    if not result.accepted and not result.duplicates:
        return
    await record(
        session,
        source.tenant_id,
        AuditEntry(
            "provider_webhook.received",
            actor_type="system",
            actor_id=provider.value,
            target_type="source",
            target_id=str(source.id),
            data={
                "provider": provider.value,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "ignored": sum(result.ignored.values()),
            },
        ),
        now=now,
    )


# --- Lead Ads: leadgen changes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadgenChange:
    leadgen_id: str
    form_id: str | None = None
    page_id: str | None = None


def parse_leadgen_changes(notification: Notification) -> tuple[list[LeadgenChange], Counter[str]]:
    """The leadgen changes of a `page` notification, and the other fields counted as ignored.
    A leadgen change without a usable `leadgen_id` makes the whole body invalid."""
    leadgens: list[LeadgenChange] = []
    ignored = Counter(notification.ignored)
    for change in notification.changes:
        if change.field != LEADGEN_FIELD:
            ignored[change.field[:40]] += 1
            continue
        leadgen_id = graph_id(change.value.get("leadgen_id"))
        if leadgen_id is None:
            raise InvalidPayload(
                "a leadgen change needs a numeric 'leadgen_id'",
                errors=[{"field": "entry.changes.value.leadgen_id", "message": "missing"}],
            )
        leadgens.append(
            LeadgenChange(
                leadgen_id,
                form_id=graph_id(change.value.get("form_id")),
                page_id=graph_id(change.value.get("page_id")) or graph_id(change.entry_id),
            )
        )
    return leadgens, ignored


async def accept_leadgen_changes(
    session: AsyncSession,
    source: Source,
    leadgens: Sequence[LeadgenChange],
    ignored: Mapping[str, int],
    *,
    now: datetime,
) -> DeliveryResult:
    """One `capture.meta_fetch_lead` job per leadgen id never seen for this source, in the
    caller's transaction; replays (and repeats inside the body) are counted as duplicates."""
    first: dict[str, LeadgenChange] = {}
    for change in leadgens:
        first.setdefault(change.leadgen_id, change)
    new = await remember_deliveries(
        session, receipt_provider(Provider.META_LEAD_ADS, source.id), list(first)
    )
    for leadgen_id, change in first.items():
        if leadgen_id in new:
            await defer(
                session,
                META_FETCH_TASK,
                tenant_id=str(source.tenant_id),
                source_id=str(source.id),
                leadgen_id=leadgen_id,
                form_id=change.form_id,
                page_id=change.page_id,
            )
    result = DeliveryResult(len(new), len(leadgens) - len(new), dict(ignored))
    await record_delivery(session, source, Provider.META_LEAD_ADS, result, now=now)
    return result


# --- Lead Ads: the Graph API adapter ------------------------------------------------------


class GraphUnavailable(Exception):
    """The Graph API could not answer now (network, timeout, 5xx, rate limit): retry later."""


class GraphRefused(Exception):
    """The Graph API refused the request (a 4xx with Meta's error body): retrying won't help."""


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the access token keyed with the app secret (Meta's `appsecret_proof`),
    which apps with "Require App Secret" need on every call."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def describe_graph_error(status: int, body: object, *, secrets: Sequence[str] = ()) -> str:
    """One line from Meta's error body (`{"error": {"message", "type", "code",
    "error_subcode", "fbtrace_id"}}`), without any of `secrets`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [f"HTTP {status}", str(error.get("type") or "GraphError")]
        if error.get("code") is not None:
            parts.append(f"code {error.get('code')}")
        if error.get("error_subcode") is not None:
            parts.append(f"subcode {error.get('error_subcode')}")
        line = " ".join(parts) + f": {error.get('message') or 'no message'}"
        if error.get("fbtrace_id"):
            line += f" (fbtrace_id {error.get('fbtrace_id')})"
    else:
        line = f"HTTP {status} without a Graph error body"
    for secret in secrets:
        if secret:
            line = line.replace(secret, "[redacted]")
    return line[:1000]


def _is_transient(status: int, body: object) -> bool:
    if status >= 500 or status == 429:
        return True
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and (
        error.get("is_transient") is True or error.get("code") in TRANSIENT_GRAPH_CODES
    )


@dataclass(frozen=True, slots=True)
class GraphClient:
    """Lead retrieval: `GET {base_url}/{leadgen_id}?access_token=…&appsecret_proof=…`."""

    http: httpx.AsyncClient
    base_url: str
    access_token: str
    app_secret: str = ""
    timeout_seconds: float = GRAPH_TIMEOUT_SECONDS

    async def fetch_lead(self, leadgen_id: str) -> dict[str, Any]:
        """The lead (`{"id", "created_time", "field_data": [...]}`); GraphUnavailable when a
        retry may help, GraphRefused when it cannot."""
        params = {"access_token": self.access_token}
        if self.app_secret:
            params["appsecret_proof"] = appsecret_proof(self.access_token, self.app_secret)
        url = f"{self.base_url.rstrip('/')}/{quote(leadgen_id, safe='')}"
        try:
            response = await self.http.get(url, params=params, timeout=self.timeout_seconds)
        except httpx.HTTPError as error:
            # The message of an httpx error may carry the URL, hence the token: name it only.
            raise GraphUnavailable(f"{type(error).__name__} calling the Graph API") from None
        try:
            body: object = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if status == 200 and isinstance(body, dict):
            return body
        secrets = (self.access_token, self.app_secret)
        if _is_transient(status, body) or not 400 <= status < 500:
            raise GraphUnavailable(describe_graph_error(status, body, secrets=secrets))
        raise GraphRefused(describe_graph_error(status, body, secrets=secrets))


# --- Lead Ads: mapping and capture --------------------------------------------------------

# Meta's standard question names -> intake fields. Anything else is an answer to a custom
# question: kept with the lead's provenance (as "answer:<name>"), never as a lead field.
FIELD_MAP = {
    "email": "email",
    "phone_number": "phone",
    "full_name": "full_name",
    "first_name": "first_name",
    "last_name": "last_name",
    "company_name": "company",
    "job_title": "title",
    "city": "city",
    "country": "country",
    "website": "website",
}
# The same limits as a lead sent to POST /v1/leads.
_LIMITS = {
    name: next(m.max_length for m in info.metadata if isinstance(m, MaxLen))
    for name, info in LeadIn.model_fields.items()
    if name != "source"
}
ANSWER_PREFIX = "answer:"
MAX_ANSWER_CHARS = 2000


class LeadMismatch(Exception):
    """The Graph API answered with another lead than the one asked for."""


@dataclass(frozen=True, slots=True)
class MappedLead:
    row: dict[str, str | None]  # intake fields, external_id = the leadgen id
    answers: dict[str, str]  # custom questions: name -> values joined with ", "


def _texts(values: object) -> list[str]:
    if not isinstance(values, list):
        return []
    scalars = (v for v in values if isinstance(v, str | int | float) and not isinstance(v, bool))
    return [cleaned for value in scalars if (cleaned := str(value).strip())]


def map_lead(lead: Mapping[str, Any], *, leadgen_id: str) -> MappedLead:
    """A Graph lead's `field_data` as one intake row plus the answers to custom questions."""
    if str(lead.get("id", leadgen_id)) != leadgen_id:
        raise LeadMismatch(f"asked for lead {leadgen_id}, got {str(lead.get('id'))[:100]}")
    row: dict[str, str | None] = {"external_id": leadgen_id}
    answers: dict[str, str] = {}
    field_data = lead.get("field_data")
    for item in field_data if isinstance(field_data, list) else []:
        name = item.get("name") if isinstance(item, dict) else None
        texts = _texts(item.get("values")) if isinstance(item, dict) else []
        if not isinstance(name, str) or not name or not texts:
            continue
        target = FIELD_MAP.get(name.lower())
        if target is not None and row.get(target) is None:
            row[target] = texts[0][: _LIMITS[target]]
        else:
            answers[name[:100]] = ", ".join(texts)[:MAX_ANSWER_CHARS]
    return MappedLead(row, answers)


async def get_lead_by_external_id(
    session: AsyncSession, source_id: uuid.UUID, external_id: str
) -> Lead | None:
    """The lead this source's id points at (followed to the survivor of a merge)."""
    lead = await session.scalar(
        select(Lead)
        .join(ExternalId, ExternalId.lead_id == Lead.id)
        .where(ExternalId.source_id == source_id, ExternalId.external_id == external_id)
    )
    hops = 0
    while (
        lead is not None and lead.status == LeadStatus.MERGED and lead.merged_into_id and hops < 10
    ):
        lead, hops = await session.get(Lead, lead.merged_into_id), hops + 1
    return lead


async def lock_capture(session: AsyncSession, key: str) -> None:
    """Serialize captures of the same provider id until the transaction ends (two jobs for
    one leadgen id, two messages from one number)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )


async def capture_meta_lead(
    session: AsyncSession,
    source: Source,
    mapped: MappedLead,
    *,
    policy: intake.CapturePolicy,
    now: datetime,
) -> intake.RowResult:
    """Capture a fetched lead through `intake.ingest` (its external id makes a repeat a
    duplicate, never a second lead), then keep the custom answers in its provenance."""
    (result,) = await intake.ingest(
        session,
        source,
        [mapped.row],
        normalize=clean_lead,
        policy=policy,
        now=now,
        actor_type="system",
        actor_id=Provider.META_LEAD_ADS.value,
    )
    if result.lead_id is not None and result.status != intake.RowStatus.REJECTED and mapped.answers:
        session.add(
            LeadObservation(
                tenant_id=source.tenant_id,
                lead_id=result.lead_id,
                source_id=source.id,
                observed_at=now,
                fields={
                    (ANSWER_PREFIX + name)[:50]: {"value": value, "raw_value": value}
                    for name, value in mapped.answers.items()
                },
            )
        )
    return result
