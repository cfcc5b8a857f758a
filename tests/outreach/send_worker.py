"""A separate sending process for the multi-worker test: it queues the given drafts through the
real send path, all at once, and prints one status per draft (JSON lines).

    python -m tests.outreach.send_worker OWNER_URL APP_URL TENANT_ID DRAFT_ID…
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
from leadrelay.outreach import service
from leadrelay.outreach.models import MessageKind

KEYS = "multi-worker-test-keys"


async def main(owner: str, app: str, tenant: str, drafts: list[str]) -> None:
    urls = DatabaseUrls(owner=owner, app=app, app_role="leadrelay_app", app_password="")
    db = Database(urls)
    tenant_id = uuid.UUID(tenant)

    async def one(draft: str) -> str:
        async with db.session(tenant_id) as session:
            message, _ = await service.queue_draft(
                session,
                system_principal(tenant_id),
                uuid.UUID(draft),
                settings=Settings(database_url=owner, database_app_url=app),
                keys=KEYS,
                kind=MessageKind.CAMPAIGN,
                idempotency_key=None,
                now=utcnow(),
            )
            return str(message.status)

    try:
        for status in await asyncio.gather(*(one(d) for d in drafts)):
            sys.stdout.write(json.dumps(status) + "\n")
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
