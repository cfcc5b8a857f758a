"""Replay protection for signed inbound webhooks, kept in PostgreSQL so that it holds across
every API process: a delivery id is accepted once per provider."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.jobs_models import WebhookReceipt


async def remember_delivery(session: AsyncSession, *, provider: str, delivery_id: str) -> bool:
    """True the first time (provider, delivery_id) is seen, False for a replay. Part of the
    caller's transaction: if the delivery is not stored, neither is the receipt."""
    inserted = await session.scalar(
        pg_insert(WebhookReceipt)
        .values(provider=provider, delivery_id=delivery_id)
        .on_conflict_do_nothing()
        .returning(WebhookReceipt.delivery_id)
    )
    return inserted is not None
