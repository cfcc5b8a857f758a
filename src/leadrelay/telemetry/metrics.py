"""Prometheus gauges of what the database holds: leads by status, messages by status (and
dry-run or live), delivery events by kind — every tenant's, summed (no tenant label: the
series stay few whatever the number of tenants).

They are read at scrape time (`/metrics`), at most once per `REFRESH_SECONDS`: the app role
sees one tenant per transaction (RLS), so the refresh walks the tenants, one short grouped
count each, in one read-only transaction per tenant.
"""

from __future__ import annotations

import time
import uuid

import structlog
from prometheus_client import Gauge
from sqlalchemy import text

from leadrelay.core.db import Database, all_tenant_ids

REFRESH_SECONDS = 15.0

LEADS = Gauge("leadrelay_leads", "Leads stored, by status", ["status"])
MESSAGES = Gauge(
    "leadrelay_messages", "Messages stored, by status and dry-run", ["status", "dry_run"]
)
DELIVERY_EVENTS = Gauge(
    "leadrelay_delivery_events", "Provider delivery events stored, by kind", ["kind"]
)

_COUNTS = text(
    """
    SELECT 'leads' AS metric, status AS label, NULL AS dry_run, count(*) AS n
    FROM leads GROUP BY status
    UNION ALL
    SELECT 'messages', status, dry_run::text, count(*) FROM messages GROUP BY status, dry_run
    UNION ALL
    SELECT 'events', kind, NULL, count(*) FROM delivery_events GROUP BY kind
    """
)

_log = structlog.get_logger(__name__)
_state: dict[str, float] = {"refreshed": float("-inf")}


async def _tenant_counts(
    db: Database, tenant_id: uuid.UUID
) -> list[tuple[str, str, str | None, int]]:
    async with db.session(tenant_id) as session:
        rows = await session.execute(_COUNTS)
        return [(r.metric, r.label, r.dry_run, int(r.n)) for r in rows]


async def refresh_metrics(db: Database, *, force: bool = False) -> None:
    """Recount (unless the last count is fresh). A failure keeps the previous values and is
    logged: a scrape never fails because of it."""
    now = time.monotonic()
    if not force and now - _state["refreshed"] < REFRESH_SECONDS:
        return
    _state["refreshed"] = now
    try:
        async with db.session() as session:
            tenant_ids = await all_tenant_ids(session)
        leads: dict[str, int] = {}
        messages: dict[tuple[str, str], int] = {}
        events: dict[str, int] = {}
        for tenant_id in tenant_ids:
            for metric, label, dry_run, n in await _tenant_counts(db, tenant_id):
                if metric == "leads":
                    leads[label] = leads.get(label, 0) + n
                elif metric == "messages":
                    key = (label, dry_run or "false")
                    messages[key] = messages.get(key, 0) + n
                else:
                    events[label] = events.get(label, 0) + n
    except Exception:  # the database is down or busy: keep the last values
        _log.warning("metrics.refresh_failed", exc_info=True)
        return
    LEADS.clear()
    MESSAGES.clear()
    DELIVERY_EVENTS.clear()
    for status, n in leads.items():
        LEADS.labels(status=status).set(n)
    for (status, dry_run), n in messages.items():
        MESSAGES.labels(status=status, dry_run=dry_run).set(n)
    for kind, n in events.items():
        DELIVERY_EVENTS.labels(kind=kind).set(n)
