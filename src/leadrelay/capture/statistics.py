"""The planner's statistics of leads, kept current while intake grows the tables faster than
autovacuum re-analyses them.

Until a table is analysed, and again once it has grown well past its last analysis, the
planner guesses row counts: a verification chunk of 1,000 leads joined by id to 20,000 was
planned as a nested loop comparing every pair (7 s for one chunk; migration 0023). Any way
in can grow the tables that fast — an import, a client posting batches, a webhook burst — and
the jobs that follow (verification, fuzzy matching) are where the bad plans bite, so they
look first: when the leads changed since the last analysis outnumber the leads the planner
knows of (at least `FLOOR` of them), the statistics are refreshed. Each refresh reads a fixed
sample, and the table must double before the next: a few per run at any size. A CSV import
keeps its own schedule as well (`csv_import.ANALYZE_FIRST_AT`): it counts the leads it adds
exactly, without the second or more the counters lag behind, and its own look-ups come first.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

FLOOR = 1000  # changed leads: below this the planner's guesses cost nothing worth a refresh
GROWTH = 1.0  # changed leads per lead known at the last analysis: the table has doubled

# reltuples is -1 for a table never analysed. The counters lag a second or so behind the
# writers' commits (PostgreSQL flushes them in batches): soon enough for the next chunk.
_STALE = text(
    "SELECT s.n_mod_since_analyze > greatest(:floor, :growth * c.reltuples) "
    "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.relid = 'leads'::regclass"
)
# Two workers finding the table stale at once: one refreshes, the other goes on (a second
# ANALYZE would wait for the first and then read the same sample again).
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('app_analyze_leads'))")


async def refresh_if_stale(session: AsyncSession) -> bool:
    """Refresh the statistics of leads and their rows if they are stale; True if it did.
    Run it in a transaction of its own: ANALYZE holds its lock on the tables until commit."""
    if not await session.scalar(_STALE, {"floor": FLOOR, "growth": GROWTH}):
        return False
    if not await session.scalar(_TRY_LOCK):
        return False
    await session.execute(text("SELECT app_analyze_leads()"))
    return True
