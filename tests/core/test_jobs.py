"""The job queue: retries back off exponentially with jitter, a permanent error is not retried,
and a job that fails its last try leaves a dead letter holding everything needed to replay it."""

from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from procrastinate.jobs import Job
from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import (
    BackoffWithJitter,
    JobRuntime,
    PermanentJobError,
    defer,
    job_app,
    retry_strategy,
)
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.logging import correlation_id_var
from tests.factories import TenantCtx, TenantFactory
from tests.support import jobs_for, make_jobs_due, new_marker, run_jobs

FAILS = "tests.jobs.always_fails"
FAILS_PERMANENTLY = "tests.jobs.fails_permanently"
SUCCEEDS = "tests.jobs.succeeds"
succeeded: list[str] = []


@job_app.task(name=FAILS, retry=retry_strategy(3))
async def always_fails(*, tenant_id: str, marker: str, correlation_id: str | None = None) -> None:
    raise RuntimeError(f"always fails {marker}")


@job_app.task(name=FAILS_PERMANENTLY, retry=retry_strategy(5))
async def fails_permanently(
    *, tenant_id: str, marker: str, correlation_id: str | None = None
) -> None:
    raise PermanentJobError(f"cannot ever work {marker}")


@job_app.task(name=SUCCEEDS, retry=retry_strategy(3))
async def succeeds(*, tenant_id: str, marker: str, correlation_id: str | None = None) -> None:
    succeeded.append(marker)


def job(attempts: int) -> Job:
    return Job(
        id=1, queue="default", lock=None, queueing_lock=None, task_name=FAILS, attempts=attempts
    )


class TestBackoffWithJitter:
    @given(
        attempts=st.integers(min_value=0, max_value=40),
        seed=st.integers(min_value=0, max_value=2**32),
        base=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        cap=st.sampled_from([10.0, 60.0, 3600.0]),
    )
    def test_each_delay_lies_between_half_and_all_of_its_ceiling(
        self, attempts: int, seed: int, base: float, cap: float
    ) -> None:
        strategy = BackoffWithJitter(base_seconds=base, cap_seconds=cap, rng=random.Random(seed))
        ceiling = min(cap, base * 2**attempts)
        assert math.ceil(ceiling / 2) <= strategy.delay_seconds(attempts) <= math.ceil(ceiling)

    @given(seed=st.integers(min_value=0, max_value=2**32))
    def test_delays_grow_exponentially_until_the_cap(self, seed: int) -> None:
        strategy = BackoffWithJitter(base_seconds=2, cap_seconds=3600, rng=random.Random(seed))
        delays = [strategy.delay_seconds(n) for n in range(16)]

        # Equal jitter: below the cap, a later wait is never shorter than an earlier one.
        assert delays[:11] == sorted(delays[:11])
        for n in range(11):  # 2·2^10 = 2048 < 3600: not capped yet
            assert 2**n <= delays[n] <= 2 ** (n + 1)
        for n in range(11, 16):
            assert 1800 <= delays[n] <= 3600

    @given(seed=st.integers(min_value=0, max_value=2**32))
    def test_jitter_spreads_the_waits(self, seed: int) -> None:
        rng = random.Random(seed)
        strategy = BackoffWithJitter(rng=rng)
        assert len({strategy.delay_seconds(10) for _ in range(50)}) > 1

    @pytest.mark.parametrize("attempts", [0, 1, 2, 3])
    def test_retries_before_the_last_attempt(self, attempts: int) -> None:
        strategy = BackoffWithJitter(max_attempts=5, rng=random.Random(7))
        expected = BackoffWithJitter(max_attempts=5, rng=random.Random(7)).delay_seconds(attempts)
        before = utcnow()

        decision = strategy.get_retry_decision(exception=RuntimeError(), job=job(attempts))

        assert decision is not None
        assert decision.retry_at is not None
        wait = decision.retry_at - before
        assert timedelta(seconds=expected) <= wait <= timedelta(seconds=expected + 1)

    def test_gives_up_at_the_last_attempt(self) -> None:
        strategy = BackoffWithJitter(max_attempts=5)
        assert strategy.get_retry_decision(exception=RuntimeError(), job=job(4)) is None
        assert strategy.get_retry_decision(exception=RuntimeError(), job=job(9)) is None

    @pytest.mark.parametrize("attempts", [0, 2])
    def test_never_retries_a_permanent_error(self, attempts: int) -> None:
        strategy = BackoffWithJitter(max_attempts=5)
        decision = strategy.get_retry_decision(exception=PermanentJobError(), job=job(attempts))
        assert decision is None


async def dead_letters(db: Database, tenant: TenantCtx, job_id: int) -> list[DeadLetter]:
    async with db.session(tenant.id) as session:
        return list(await session.scalars(select(DeadLetter).where(DeadLetter.job_id == job_id)))


def assert_backoff(
    job_row: dict[str, object], before: datetime, after: datetime, low: float, high: float
) -> None:
    """The job was scheduled `low`…`high` seconds after the moment it was deferred or failed,
    which lies between `before` and `after` (a slow run must not look like a long backoff):
    half a second of slack for clocks and rounding."""
    scheduled_at = job_row["scheduled_at"]
    assert isinstance(scheduled_at, datetime)
    assert (scheduled_at - before).total_seconds() >= low - 0.5
    assert (scheduled_at - after).total_seconds() <= high + 0.5


class TestDeadLetterMiddleware:
    async def test_retries_a_failing_task_then_writes_a_dead_letter(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()
        async with db.session(tenant.id) as session:
            job_id = await defer(session, FAILS, tenant_id=tenant.id, marker=marker)

        before = utcnow()
        await run_jobs()
        after = utcnow()
        (first,) = jobs_for(urls, FAILS, marker=marker)
        assert (first["id"], first["status"], first["attempts"]) == (job_id, "todo", 1)
        assert_backoff(first, before, after, 1, 2)  # ceil(uniform(1, 2)) seconds
        assert await dead_letters(db, tenant, job_id) == []

        await run_jobs()  # not due yet: nothing happens
        assert jobs_for(urls, FAILS, marker=marker)[0]["attempts"] == 1

        assert make_jobs_due(urls, FAILS, marker=marker) == 1
        before = utcnow()
        await run_jobs()
        after = utcnow()
        (second,) = jobs_for(urls, FAILS, marker=marker)
        assert (second["status"], second["attempts"]) == ("todo", 2)
        assert_backoff(second, before, after, 2, 4)  # ceil(uniform(2, 4)) seconds
        assert await dead_letters(db, tenant, job_id) == []

        make_jobs_due(urls, FAILS, marker=marker)
        await run_jobs()
        (last,) = jobs_for(urls, FAILS, marker=marker)
        assert last["status"] == "failed"
        (letter,) = await dead_letters(db, tenant, job_id)
        assert letter.tenant_id == tenant.id
        assert letter.task_name == FAILS
        assert letter.queue == "default"
        assert letter.payload == {"tenant_id": str(tenant.id), "marker": marker}
        assert letter.error == f"RuntimeError: always fails {marker}"
        assert letter.attempts == 3
        assert (letter.replayed_at, letter.replay_job_id) == (None, None)

    async def test_does_not_retry_a_permanent_error(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()
        async with db.session(tenant.id) as session:
            job_id = await defer(session, FAILS_PERMANENTLY, tenant_id=tenant.id, marker=marker)

        await run_jobs()

        (row,) = jobs_for(urls, FAILS_PERMANENTLY, marker=marker)
        assert row["status"] == "failed"
        (letter,) = await dead_letters(db, tenant, job_id)
        assert letter.attempts == 1
        assert letter.error == f"leadrelay.core.jobs.PermanentJobError: cannot ever work {marker}"

    async def test_carries_the_correlation_id_into_the_job_and_its_dead_letter(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()
        token = correlation_id_var.set("flow-42")
        try:
            async with db.session(tenant.id) as session:
                job_id = await defer(session, FAILS_PERMANENTLY, tenant_id=tenant.id, marker=marker)
        finally:
            correlation_id_var.reset(token)

        await run_jobs()

        assert jobs_for(urls, FAILS_PERMANENTLY, marker=marker)[0]["args"]["correlation_id"] == (
            "flow-42"
        )
        (letter,) = await dead_letters(db, tenant, job_id)
        assert letter.correlation_id == "flow-42"

    async def test_a_succeeding_task_leaves_no_dead_letter(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()
        async with db.session(tenant.id) as session:
            job_id = await defer(session, SUCCEEDS, tenant_id=tenant.id, marker=marker)

        await run_jobs()

        assert marker in succeeded
        assert jobs_for(urls, SUCCEEDS, marker=marker)[0]["status"] == "succeeded"
        assert await dead_letters(db, tenant, job_id) == []

    async def test_a_job_deferred_in_a_rolled_back_transaction_never_exists(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()

        class Abort(Exception):
            pass

        async def defer_then_fail() -> None:
            async with db.session(tenant.id) as session:
                await defer(session, SUCCEEDS, tenant_id=tenant.id, marker=marker)
                raise Abort

        with pytest.raises(Abort):
            await defer_then_fail()

        assert jobs_for(urls, SUCCEEDS, marker=marker) == []

    async def test_defers_with_a_delay(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant, marker = await tenants.create(), new_marker()
        before = utcnow()
        async with db.session(tenant.id) as session:
            await defer(
                session, SUCCEEDS, schedule_in_seconds=600, tenant_id=tenant.id, marker=marker
            )
        after = utcnow()

        await run_jobs()

        (row,) = jobs_for(urls, SUCCEEDS, marker=marker)
        assert row["status"] == "todo"
        assert_backoff(row, before, after, 600, 600)
        assert marker not in succeeded

    async def test_accepts_uuid_arguments_as_strings(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, job_runtime: JobRuntime
    ) -> None:
        tenant = await tenants.create()
        marker = uuid.uuid4()
        async with db.session(tenant.id) as session:
            await defer(session, SUCCEEDS, tenant_id=tenant.id, marker=marker)
        await run_jobs()
        assert str(marker) in succeeded
