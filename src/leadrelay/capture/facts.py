"""A lead as facts: the flat dictionary that scoring and routing rules read.

Capture owns the lead tables, so the facts are assembled here, a chunk of leads per query, and
other packages see only this dictionary (its names are `scoring.rules.LEAD_FACTS`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import phonenumbers
from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.normalize import registrable_domain
from leadrelay.core.db import raw_connection

# On the session's own connection with the ids as a binary array and rows as named tuples:
# routing and scoring read a chunk of 500 leads at a time, and SQLAlchemy's result rows and a
# text-format array (each element escaped) cost more than the query.
_FACTS = """
    SELECT l.id, l.full_name, l.email, l.phone_e164, l.phone_type, l.company, l.domain, l.city,
           l.country, l.title, l.flags, l.verification, l.attributes, l.created_at,
           s.name AS source, s.kind AS source_kind,
           (SELECT count(*) FROM lead_messages m
             WHERE m.lead_id = l.id AND m.direction = 'inbound') AS replies
    FROM leads l JOIN sources s ON s.id = l.source_id
    WHERE l.id = ANY(%b::uuid[]) AND l.status = 'new'
    """


@lru_cache(maxsize=8192)
def _registrable(host: str) -> str | None:
    # Leads share a few thousand mail hosts; the public-suffix walk costs ~40 µs each time.
    return registrable_domain(host)


def _email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return _registrable(email.rsplit("@", 1)[1].lower())


def _phone_country(e164: str | None) -> str | None:
    if not e164:
        return None
    # A country calling code that belongs to one region names it without parsing the number
    # (≈ 20 µs a lead); the code is found as phonenumbers finds it, shortest prefix first.
    # Shared codes (+1, +7, +44 …) still go through the full look-up.
    for length in (1, 2, 3):
        prefix = e164[1 : 1 + length]
        if len(prefix) < length or not prefix.isdigit():
            break
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(prefix))
        if regions is not None:
            if len(regions) == 1:
                return regions[0]
            break
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or None
    except phonenumbers.NumberParseException:
        return None


def facts_of(row: Any, now: datetime) -> dict[str, Any]:
    verification = row.verification or {}
    email = verification.get("email") or {}
    phone = verification.get("phone") or {}
    facts: dict[str, Any] = {
        "full_name": row.full_name or None,
        "email": row.email,
        "email_domain": _email_domain(row.email),
        "phone_e164": row.phone_e164,
        "phone_type": row.phone_type,
        "phone_country": _phone_country(row.phone_e164),
        "company": row.company,
        "domain": row.domain,
        "city": row.city,
        "country": row.country,
        "title": row.title,
        "source": row.source,
        "source_kind": row.source_kind,
        "flags": list(row.flags or []),
        "email_verified": email.get("verified") if email else None,
        "phone_verified": phone.get("verified") if phone else None,
        "email_confidence": email.get("confidence") if email else None,
        "phone_confidence": phone.get("confidence") if phone else None,
        "age_days": max(0.0, (now - row.created_at).total_seconds() / 86400),
        "replies": int(row.replies),
    }
    for key, value in (row.attributes or {}).items():
        facts[f"attributes.{key}"] = value
    return facts


async def lead_facts(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, dict[str, Any]]:
    """Facts of the live leads among `lead_ids` (merged or missing ones are left out)."""
    if not lead_ids:
        return {}
    await session.flush()  # a lead changed in this transaction is read as it now is
    connection = await raw_connection(session)
    async with connection.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_FACTS, (list(lead_ids),))
        rows = await cursor.fetchall()
    return {row.id: facts_of(row, now) for row in rows}
