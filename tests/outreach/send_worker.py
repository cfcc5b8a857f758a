"""A separate sending process for the multi-worker tests: it queues the given drafts through the
real send path, all at once — one draft per transaction, or with `--chunk N` N drafts per
transaction (`queueing.queue_drafts`) — and prints one status per draft (JSON lines).

    python -m tests.outreach.send_worker [--chunk N] OWNER_URL APP_URL TENANT_ID DRAFT_ID…
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.settings import Settings
from leadrelay.identity.service import system_principal
from leadrelay.outreach import queueing, service
from leadrelay.outreach.models import MessageKind

KEYS = "multi-worker-test-keys"


async def main(owner: str, app: str, tenant: str, drafts: list[str], chunk: int | None) -> None:
    urls = DatabaseUrls(owner=owner, app=app, app_role="leadrelay_app", app_password="")
    db = Database(urls)
    tenant_id = uuid.UUID(tenant)
    settings = Settings(database_url=owner, database_app_url=app)

    async def one(draft: str) -> str:
        async with db.session(tenant_id) as session:
            message, _ = await service.queue_draft(
                session,
                system_principal(tenant_id),
                uuid.UUID(draft),
                settings=settings,
                keys=KEYS,
                kind=MessageKind.CAMPAIGN,
                idempotency_key=None,
                now=utcnow(),
            )
            return str(message.status)

    async def chunk_of(part: list[str]) -> list[str]:
        async with db.session(tenant_id) as session:
            answers = await queueing.queue_drafts(
                session,
                system_principal(tenant_id),
                [queueing.QueueRequest(uuid.UUID(d)) for d in part],
                settings=settings,
                keys=KEYS,
                kind=MessageKind.CAMPAIGN,
                now=utcnow(),
            )
        return [str(a.status) if isinstance(a, queueing.Queued) else a.code for a in answers]

    try:
        if chunk is None:
            statuses = list(await asyncio.gather(*(one(d) for d in drafts)))
        else:
            parts = [drafts[n : n + chunk] for n in range(0, len(drafts), chunk)]
            statuses = [s for part in await asyncio.gather(*map(chunk_of, parts)) for s in part]
        for status in statuses:
            sys.stdout.write(json.dumps(status) + "\n")
    finally:
        await db.dispose()


if __name__ == "__main__":
    args = sys.argv[1:]
    size = None
    if args[0] == "--chunk":
        size, args = int(args[1]), args[2:]
    asyncio.run(main(args[0], args[1], args[2], args[3:], size))
