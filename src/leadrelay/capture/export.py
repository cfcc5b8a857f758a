"""Export every live lead with its normalized fields and all the external ids merged into it.
Streamed page by page; CSV cells are neutralized against formula injection."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import neutralize_cell

COLUMNS = (
    "id",
    "full_name",
    "email",
    "phone_e164",
    "phone_type",
    "company",
    "domain",
    "city",
    "country",
    "title",
    "status",
    "flags",
    "external_ids",
    "source_id",
    "created_at",
)
PAGE = 2000

_PAGE = text(
    """
    SELECT l.id, l.full_name, l.email, l.phone_e164, l.phone_type, l.company, l.domain, l.city,
           l.country, l.title, l.status, l.flags, l.source_id, l.created_at,
           coalesce((SELECT array_agg(e.external_id ORDER BY e.id) FROM lead_external_ids e
                     WHERE e.lead_id = l.id
                        OR e.lead_id IN (SELECT m.id FROM leads m WHERE m.merged_into_id = l.id)),
                    '{}') AS external_ids
    FROM leads l
    WHERE l.status <> 'merged' AND (CAST(:after AS uuid) IS NULL OR l.id > CAST(:after AS uuid))
    ORDER BY l.id
    LIMIT :limit
    """
)


async def lead_rows(session: AsyncSession) -> AsyncIterator[dict[str, Any]]:
    after: uuid.UUID | None = None
    while True:
        rows = (await session.execute(_PAGE, {"after": after, "limit": PAGE})).mappings().all()
        if not rows:
            return
        for row in rows:
            yield dict(row)
        after = rows[-1]["id"]


def as_jsonl(row: dict[str, Any]) -> str:
    return json.dumps({c: row[c] for c in COLUMNS}, default=str, ensure_ascii=False) + "\n"


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(COLUMNS)
    return buffer.getvalue()


def as_csv(row: dict[str, Any]) -> str:
    buffer = io.StringIO()
    cells = []
    for column in COLUMNS:
        value = row[column]
        if isinstance(value, list):
            value = ";".join(str(v) for v in value)
        cells.append(neutralize_cell("" if value is None else str(value)))
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()
