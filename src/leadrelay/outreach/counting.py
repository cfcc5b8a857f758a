"""Counting messages against the caps and throttles, in PostgreSQL, one tenant and channel at a
time, so the limits hold across any number of worker processes.

A sender takes the transaction-scoped advisory lock of each (tenant, channel) it decides for,
reads the counters (`read_tally`), decides, inserts the messages it counted and commits, which
releases the lock. A chunk of messages reads its counters once: `Tally` then counts each
allowed message in memory before the next one is decided, so a chunk decided in order gets
exactly what deciding its messages one by one would.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.db import raw_connection
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach import policy as guard

EMAIL, VOICE = Channel.EMAIL.value, Channel.VOICE.value


class Countable(Protocol):
    """A message as the counters see it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def lead_id(self) -> uuid.UUID: ...
    @property
    def channel(self) -> str: ...
    @property
    def recipient_domain(self) -> str | None: ...
    @property
    def recipient_country(self) -> str | None: ...


def lock_key(tenant_id: uuid.UUID, channel: str) -> int:
    digest = hashlib.sha256(f"outreach:{tenant_id}:{channel}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_counting(
    session: AsyncSession, tenant_id: uuid.UUID, channels: Iterable[str]
) -> None:
    """One decision at a time per tenant and channel: counts read under the lock stay true until
    the transaction that adds the messages commits. Keys are taken in order, so two senders
    that both need several channels never wait for each other in a circle."""
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        for key in sorted({lock_key(tenant_id, channel) for channel in channels}):
            await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


def local_midnight(now: datetime, zone: str) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# Counted messages only (`counted_at` set): per channel since the tenant's midnight, e-mails per
# recipient domain in the last hour, calls per country since midnight, and each lead's last
# contact (on any channel, the chunk's own messages left out).
_TALLY = (
    "SELECT 'channel', channel, count(*), NULL::timestamptz[], NULL::timestamptz "
    "FROM messages WHERE counted_at >= %(day_start)s AND channel = ANY(%(channels)s::text[]) "
    "GROUP BY channel "
    "UNION ALL "
    "SELECT 'domain', recipient_domain, count(*), array_agg(counted_at), NULL "
    "FROM messages WHERE channel = 'email' AND recipient_domain = ANY(%(domains)s::text[]) "
    "AND counted_at > %(hour_ago)s GROUP BY recipient_domain "
    "UNION ALL "
    "SELECT 'country', recipient_country, count(*), NULL, NULL "
    "FROM messages WHERE channel = 'voice' AND recipient_country = ANY(%(countries)s::text[]) "
    "AND counted_at >= %(day_start)s GROUP BY recipient_country "
    "UNION ALL "
    "SELECT 'lead', lead_id::text, count(*), NULL, max(counted_at) "
    "FROM messages WHERE lead_id = ANY(%(leads)s::uuid[]) AND counted_at IS NOT NULL "
    "AND id <> ALL(%(ids)s::uuid[]) GROUP BY lead_id"
)


@dataclass
class Tally:
    """The tenant's counters at one instant, kept up to date as a chunk's messages are counted."""

    sent_today: Counter[str] = field(default_factory=Counter)  # per channel
    domain_sends: dict[str, list[datetime]] = field(default_factory=dict)  # e-mail, last hour
    calls_today: Counter[str] = field(default_factory=Counter)  # per country
    last_contact: dict[uuid.UUID, datetime] = field(default_factory=dict)  # per lead

    def counters(self, message: Countable) -> guard.Counters:
        domain, country = message.recipient_domain, message.recipient_country
        return guard.Counters(
            sent_today=self.sent_today[message.channel],
            domain_sends=tuple(self.domain_sends.get(domain, ())) if domain else (),
            calls_today_to_country=self.calls_today[country]
            if message.channel == VOICE and country
            else 0,
            last_contact_at=self.last_contact.get(message.lead_id),
        )

    def count(self, message: Countable, now: datetime) -> None:
        """`message` took its place at `now` (the guard let it through)."""
        self.sent_today[message.channel] += 1
        if message.channel == EMAIL and message.recipient_domain:
            self.domain_sends.setdefault(message.recipient_domain, []).append(now)
        if message.channel == VOICE and message.recipient_country:
            self.calls_today[message.recipient_country] += 1
        self.last_contact[message.lead_id] = now


async def read_tally(
    session: AsyncSession, messages: Sequence[Countable], *, zone: str, now: datetime
) -> Tally:
    """The counters every message of the chunk needs, in one statement. The caller holds the
    counting lock of each of their channels (`lock_counting`)."""
    tally = Tally()
    if not messages:
        return tally
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _TALLY,
            {
                "day_start": local_midnight(now, zone),
                "hour_ago": now - guard.DOMAIN_WINDOW,
                "channels": list({m.channel for m in messages}),
                "domains": list(
                    {m.recipient_domain for m in messages if m.channel == EMAIL} - {None}
                ),
                "countries": list(
                    {m.recipient_country for m in messages if m.channel == VOICE} - {None}
                ),
                "leads": list({m.lead_id for m in messages}),
                "ids": [m.id for m in messages],
            },
        )
        rows = await cursor.fetchall()
    for kind, key, count, instants, last in rows:
        if kind == "channel":
            tally.sent_today[key] = count
        elif kind == "domain":
            tally.domain_sends[key] = list(instants)
        elif kind == "country":
            tally.calls_today[key] = count
        else:
            tally.last_contact[uuid.UUID(key)] = last
    return tally
