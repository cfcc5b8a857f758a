"""Verification of captured leads, as a job after intake: e-mail (syntax, provider lists, MX
when DNS servers are configured) and phone (validity and type), each with a 0–1 confidence,
judged against the tenant's thresholds and stored on the lead."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.models import Lead
from leadrelay.capture.verification_store import DatabaseVerificationCache
from leadrelay.capture.verifiers.kickbox import KickboxEmailVerifier
from leadrelay.capture.verifiers.twilio_lookup import TwilioLookupVerifier
from leadrelay.capture.verify import (
    DEFAULT_THRESHOLDS,
    DnsResolver,
    EmailVerifier,
    InMemoryVerificationCache,
    OfflineEmailVerifier,
    OfflinePhoneVerifier,
    PhoneVerifier,
    VerificationCache,
    VerificationKind,
    VerificationResult,
    is_verified,
    make_resolver,
    verify_cached,
)
from leadrelay.core.db import Database, any_uuid, raw_connection
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Tenant


@dataclass
class Verifiers:
    email: EmailVerifier
    phone: PhoneVerifier
    cache: VerificationCache


def verifiers_for(settings: Settings, db: Database | None = None) -> Verifiers:
    """The offline verifiers; with `db`, results are shared through the database cache."""
    servers = [s.strip() for s in settings.dns_resolvers.split(",") if s.strip()]
    # Without a configured DNS server nothing is asked: deliverability is reported unknown
    # (`dns_unavailable`), never a failure.
    resolver: DnsResolver | None = make_resolver(servers) if servers else None
    cache: VerificationCache = (
        DatabaseVerificationCache(db, secret_keys(settings))
        if db is not None
        else InMemoryVerificationCache()
    )
    email: EmailVerifier = OfflineEmailVerifier(
        resolver, probe_name="com." if servers else None, dns=bool(servers)
    )
    phone: PhoneVerifier = OfflinePhoneVerifier()
    if kickbox_key := settings.kickbox_api_key.get_secret_value():
        email = KickboxEmailVerifier(kickbox_key, base_url=settings.kickbox_base_url)
    twilio_token = settings.twilio_auth_token.get_secret_value()
    if settings.twilio_account_sid and twilio_token:
        phone = TwilioLookupVerifier(
            settings.twilio_account_sid, twilio_token, base_url=settings.twilio_lookup_base_url
        )
    return Verifiers(email=email, phone=phone, cache=cache)


def thresholds(settings: Mapping[str, Any]) -> dict[str, float]:
    custom = settings.get("verification_thresholds")
    merged = dict(DEFAULT_THRESHOLDS)
    if isinstance(custom, dict):
        for kind in ("email", "phone"):
            value = custom.get(kind)
            if isinstance(value, int | float) and 0 <= value <= 1:
                merged[kind] = float(value)
    return merged


def _summary(result: VerificationResult, threshold: float) -> dict[str, Any]:
    return {
        "status": str(result.status),
        "confidence": round(result.confidence, 3),
        "reason": result.reason,
        "provider": result.provider,
        "checked_at": result.checked_at.isoformat(),
        "verified": is_verified(result, threshold),
    }


_READ_LEADS = (
    "SELECT id, email, phone_e164, phone_type FROM leads "
    "WHERE id = ANY(%b::uuid[]) AND status = 'new'"
)
# Rows are locked in id order, as the dedup job locks them: an UPDATE takes its locks in the
# order its plan meets the rows, and two jobs doing that deadlock.
_LOCK_IN_ORDER = "SELECT 1 FROM leads WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
# No lock is held while the verifiers run (a DNS question may take a second): the update
# merges its results into whatever the row holds by then. `||` replaces the top-level "email"
# and "phone" keys and keeps the others; the verified flags are set from this run, every other
# flag is left as it is. A lead merged meanwhile is left alone.
_STORE_RESULTS = (
    "UPDATE leads SET verification = leads.verification || t.verification, "
    "flags = ARRAY(SELECT DISTINCT f FROM unnest(leads.flags || string_to_array(t.flags, ',')) f "
    "WHERE f NOT IN ('email_verified', 'phone_verified') OR f = ANY(string_to_array(t.flags, ',')) "
    "ORDER BY f), updated_at = %s "
    "FROM unnest(%b::uuid[], %b::jsonb[], %b::text[]) AS t(id, verification, flags) "
    "WHERE leads.id = t.id AND leads.status = 'new'"
)


async def verify_leads(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID], verifiers: Verifiers, *, now: datetime
) -> int:
    """Verify these leads' e-mail and phone; returns how many were updated. Idempotent: a
    second run refreshes the same fields (from the 30-day cache). Merged leads are left as
    they are."""
    tenant_id = await session.scalar(
        select(Lead.tenant_id).where(Lead.id == any_uuid(lead_ids)).limit(1)
    )
    if tenant_id is None:
        return 0
    tenant = await session.get(Tenant, tenant_id)
    limits = thresholds(tenant.settings if tenant else {})
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_READ_LEADS, (list(lead_ids),))
        leads: list[tuple[uuid.UUID, str | None, str | None, str | None]] = list(
            await cursor.fetchall()
        )
    if isinstance(verifiers.cache, DatabaseVerificationCache):
        await verifiers.cache.prefetch(
            VerificationKind.EMAIL, [email for _, email, _, _ in leads if email], now=now
        )
        if not isinstance(verifiers.phone, OfflinePhoneVerifier):
            await verifiers.cache.prefetch(
                VerificationKind.PHONE, [phone for _, _, phone, _ in leads if phone], now=now
            )
    ids: list[uuid.UUID] = []
    results: list[Jsonb] = []
    flag_lists: list[str] = []  # the verified flags each lead earns
    # Offline, a stored phone's verification follows from the type intake found for it.
    offline_phone = verifiers.phone if isinstance(verifiers.phone, OfflinePhoneVerifier) else None
    for lead_id, email, phone, phone_type in leads:
        verification: dict[str, Any] = {}
        flags: set[str] = set()
        if email:
            result = await verify_cached(verifiers.email, verifiers.cache, email, now=now)
            verification["email"] = _summary(result, limits["email"])
            if verification["email"]["verified"]:
                flags.add("email_verified")
        if phone:
            result = (
                offline_phone.typed(phone, phone_type, now=now)
                if offline_phone is not None and phone_type
                else await verify_cached(verifiers.phone, verifiers.cache, phone, now=now)
            )
            verification["phone"] = _summary(result, limits["phone"])
            if verification["phone"]["verified"]:
                flags.add("phone_verified")
        ids.append(lead_id)
        results.append(Jsonb(verification))
        flag_lists.append(",".join(sorted(flags)))
    updated = 0
    if ids:
        async with connection.cursor() as cursor:
            await cursor.execute(_LOCK_IN_ORDER, (ids,))
            await cursor.execute(_STORE_RESULTS, (now, ids, results, flag_lists))
            updated = cursor.rowcount
    if isinstance(verifiers.cache, DatabaseVerificationCache):
        await verifiers.cache.flush()
    return updated
