"""Properties of intake on the real database: the same input twice creates no new lead."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.intake import CapturePolicy, RowStatus, ingest
from leadrelay.capture.models import Lead, LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from tests.factories import TenantFactory

names = st.sampled_from(["Ada Lovelace", "GRACE HOPPER", "alan turing", "", "Zoë Ålander"])
locals_ = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?", fullmatch=True)
domains = st.sampled_from(["engines.io", "gmail.com", "acme-corp.co.uk", "exämple.de"])
phones = st.sampled_from(["+1 415 555 0101", "(212) 555-0142", "020 7946 0958", "", "12"])
rows = st.lists(
    st.fixed_dictionaries(
        {
            "full_name": names,
            "email": st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains),
            "phone": phones,
            "external_id": st.one_of(st.none(), st.from_regex(r"x-[0-9]{1,4}", fullmatch=True)),
        }
    ),
    min_size=1,
    max_size=12,
)


class TestSameInputTwice:
    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(batch=rows)
    async def test_creates_no_new_lead(
        self, db: Database, tenants: TenantFactory, batch: list[dict[str, str | None]]
    ) -> None:
        tenant = await tenants.create()
        async with db.session(tenant.id) as session:
            source = Source(
                tenant_id=tenant.id,
                name=f"s-{uuid.uuid4().hex[:6]}",
                kind=SourceKind.OFFICIAL_API,
                legal_basis=LegalBasis.CONSENT,
                status=SourceStatus.VETTED,
            )
            session.add(source)
            await session.flush()
            first = await ingest(
                session, source, batch, normalize=clean_lead, policy=CapturePolicy(), now=utcnow()
            )
            count = await session.scalar(select(func.count()).select_from(Lead))
            second = await ingest(
                session, source, batch, normalize=clean_lead, policy=CapturePolicy(), now=utcnow()
            )
            again = await session.scalar(select(func.count()).select_from(Lead))
        assert again == count
        assert all(r.status != RowStatus.ACCEPTED for r in second)
        for before, after in zip(first, second, strict=True):
            if before.status != RowStatus.REJECTED:
                assert after.lead_id == before.lead_id
