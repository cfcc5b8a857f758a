"""CSV import through the real CLI: detection, row-level reports, nothing dropped, export."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadrelay.capture import csv_import, intake
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.models import ImportIssue, Lead, LeadImport
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli, owner_connection

MESSY = (
    "Name;E-mail;Telephone;Company;Ville;external_id\n"
    "José Müller;jose@muller-gmbh.de;030 1234567;Müller GmbH;Berlin;m-1\n"
    "Ana;not-an-email;;Nowhere;;m-2\n"
    "\n"
    "Too;many;cells;here;x;y;z\n"
    "Jose Muller;JOSE@muller-gmbh.de;;Müller GmbH;;m-3\n"
    "Zoë Ålander;zoe@alander.se;+46 8 123 456 78;Ålander AB;Stockholm;m-4\n"
)


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


def read_report(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestImport:
    # A big file is normalized in a process of its own once it has started (a thread does
    # the chunks before): both ways give the same report.
    @pytest.mark.parametrize("normalizer", ["thread", "process"])
    async def test_reports_every_row_of_a_messy_latin1_semicolon_file(
        self,
        normalizer: str,
        monkeypatch: pytest.MonkeyPatch,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        db: Database,
        tmp_path: Path,
    ) -> None:
        if normalizer == "process":
            monkeypatch.setattr(csv_import, "NORMALIZER_PROCESS_BYTES", 0)
        await make_source(client, tenant, "Fair list", default_country="DE")
        path = tmp_path / "fair.csv"
        path.write_bytes(MESSY.encode("latin-1", errors="replace"))
        report = tmp_path / "report.jsonl"
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "import",
            str(path),
            "--source",
            "Fair list",
            "--tenant",
            tenant.slug,
            "--map",
            "Ville=city",
            "--report",
            str(report),
        )
        assert result.exit_code == 0, result.output
        assert "5 rows: 2 accepted, 1 duplicates, 2 rejected" in result.output.replace("\n", " ")
        lines = read_report(report)
        assert [(r["line"], r["status"]) for r in lines] == [
            (2, "accepted"),
            (3, "rejected"),
            (5, "rejected"),
            (6, "duplicate"),
            (7, "accepted"),
        ]
        by_line = {r["line"]: r for r in lines}
        assert by_line[2]["lead"]["phone_e164"] == "+49301234567"  # type: ignore[index]
        assert by_line[2]["lead"]["city"] == "Berlin"  # type: ignore[index]
        assert by_line[3]["errors"][0]["field"] == "email"  # type: ignore[index]
        assert by_line[5]["errors"][0]["reason"].startswith("ragged_row")  # type: ignore[index]
        assert by_line[6]["status"] == "duplicate"
        assert by_line[6]["lead_id"] == by_line[2]["lead_id"]
        assert by_line[7]["lead"]["full_name"] == "Zoë Ålander"  # type: ignore[index]
        async with db.session(tenant.id) as session:
            leads = await session.scalar(select(func.count()).select_from(Lead))
            job = await session.scalar(select(LeadImport))
            issues = list(
                await session.scalars(select(ImportIssue.line).order_by(ImportIssue.line))
            )
        assert leads == 2
        assert job is not None
        assert (job.status, job.rows_total, job.rows_rejected) == ("done", 5, 2)
        assert issues == [3, 5, 6]

    async def test_an_import_refreshes_the_planners_statistics_as_it_grows_the_tables(
        self,
        monkeypatch: pytest.MonkeyPatch,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        db: Database,
        tmp_path: Path,
    ) -> None:
        """The app role owns no table; `app_analyze_leads()` analyses for it (a manual ANALYZE:
        `last_analyze`, where autovacuum sets `last_autoanalyze`)."""
        monkeypatch.setattr(csv_import, "ANALYZE_FIRST_AT", 2)
        await make_source(client, tenant, "Fair list")
        path = tmp_path / "grow.csv"
        path.write_text("email,name\na@grow.io,A\nb@grow.io,B\nc@grow.io,C\n", encoding="utf-8")

        def analysed() -> datetime | None:
            with owner_connection(urls) as connection:
                row = connection.execute(
                    "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'leads'"
                ).fetchone()
            return row["last_analyze"] if row else None

        before = utcnow()
        summary = await csv_import.run_import(
            db, tenant.id, source_name="Fair list", path=path, mapping={}
        )
        assert summary.accepted == 3
        last = analysed()
        assert last is not None
        assert last >= before

    async def test_reads_ahead_in_a_thread_and_writes_the_chunks_in_file_order(
        self,
        monkeypatch: pytest.MonkeyPatch,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        tmp_path: Path,
    ) -> None:
        monkeypatch.setattr(csv_import, "CHUNK_ROWS", 2)
        await make_source(client, tenant, "Fair list")
        path = tmp_path / "chunks.csv"
        emails = ["a@chunk.io", "b@chunk.io", "bad", "c@chunk.io", "d@chunk.io", "A@chunk.io"]
        path.write_text("email\n" + "".join(f"{e}\n" for e in emails), encoding="utf-8")
        progressed: list[int] = []
        report = io.StringIO()
        summary = await csv_import.run_import(
            db,
            tenant.id,
            source_name="Fair list",
            path=path,
            mapping={},
            report=report,
            progress=progressed.append,
        )
        lines = [json.loads(line) for line in report.getvalue().splitlines()]
        assert [(r["line"], r["status"]) for r in lines] == [
            (2, "accepted"),
            (3, "accepted"),
            (4, "rejected"),
            (5, "accepted"),
            (6, "accepted"),
            (7, "duplicate"),  # of line 2, written two chunks before
        ]
        assert lines[5]["lead_id"] == lines[0]["lead_id"]
        assert (summary.rows, summary.accepted, summary.duplicate) == (6, 4, 1)
        assert sum(progressed) == path.stat().st_size

    async def test_a_failure_while_reading_marks_the_import_failed(
        self,
        monkeypatch: pytest.MonkeyPatch,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        tmp_path: Path,
    ) -> None:
        monkeypatch.setattr(csv_import, "CHUNK_ROWS", 2)
        read_rows = csv_import.read_rows

        def failing_rows(*args: Any, **kwargs: Any) -> Iterator[csv_import.SourceRow]:
            for number, row in enumerate(read_rows(*args, **kwargs)):
                if number == 5:
                    raise OSError("the disk went away")
                yield row

        monkeypatch.setattr(csv_import, "read_rows", failing_rows)
        await make_source(client, tenant, "Fair list")
        path = tmp_path / "broken.csv"
        path.write_text("email\n" + "".join(f"p{n}@fail.io\n" for n in range(9)), "utf-8")
        with pytest.raises(OSError, match="the disk went away"):
            await csv_import.run_import(
                db, tenant.id, source_name="Fair list", path=path, mapping={}
            )
        async with db.session(tenant.id) as session:
            job = await session.scalar(select(LeadImport))
        assert job is not None
        assert (job.status, job.error) == ("failed", "OSError: the disk went away")
        assert job.finished_at is not None
        assert job.rows_total == 2  # the chunk written while the third was read

    async def test_refuses_a_file_without_a_contact_column(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        await make_source(client, tenant, "Fair list")
        path = tmp_path / "bad.csv"
        path.write_text("name,company\nAda,Engines\n", encoding="utf-8")
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "import",
            str(path),
            "--source",
            "Fair list",
            "--tenant",
            tenant.slug,
        )
        assert result.exit_code == 1
        assert "missing required columns" in result.output

    async def test_dry_run_reports_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        db: Database,
        tmp_path: Path,
    ) -> None:
        await make_source(client, tenant, "Fair list")
        path = tmp_path / "ok.csv"
        path.write_text("email,name\na@b.io,A\nc@d.io,C\n", encoding="utf-8")
        report = tmp_path / "dry.jsonl"
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "import",
            str(path),
            "--source",
            "Fair list",
            "--tenant",
            tenant.slug,
            "--dry-run",
            "--report",
            str(report),
        )
        assert result.exit_code == 0, result.output
        assert [r["status"] for r in read_report(report)] == ["accepted", "accepted"]
        async with db.session(tenant.id) as session:
            assert await session.scalar(select(func.count()).select_from(Lead)) == 0
            assert await session.scalar(select(func.count()).select_from(LeadImport)) == 0

    async def test_refuses_an_unvetted_source(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        await make_source(client, tenant, "Unvetted", vet=False)
        path = tmp_path / "ok.csv"
        path.write_text("email\na@b.io\n", encoding="utf-8")
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "import",
            str(path),
            "--source",
            "Unvetted",
            "--tenant",
            tenant.slug,
        )
        assert result.exit_code == 1
        assert "has not been vetted" in result.output


class TestExport:
    async def test_exports_every_lead_with_its_external_ids_and_safe_cells(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        await make_source(client, tenant)
        headers = await tenant.headers(Role.REP)
        rows = [
            {"email": "ceo@evil.io", "company": '=HYPERLINK("http://x")', "external_id": "e-1"},
            {"email": "CEO@evil.io", "external_id": "e-2"},
            {"email": "cfo@good.io", "external_id": "g-1"},
        ]
        await client.post(
            "/v1/leads/batch", json={"source": "Website form", "leads": rows}, headers=headers
        )
        out = tmp_path / "leads.csv"
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "export",
            "leads",
            "--tenant",
            tenant.slug,
            "--format",
            "csv",
            "--output",
            str(out),
        )
        assert result.exit_code == 0, result.output
        table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
        by_email = {r["email"]: r for r in table}
        assert set(by_email) == {"ceo@evil.io", "cfo@good.io"}
        assert by_email["ceo@evil.io"]["external_ids"] == "e-1;e-2"
        assert by_email["ceo@evil.io"]["company"].startswith("'=")
        jsonl = tmp_path / "leads.jsonl"
        await invoke_cli(
            urls,
            str(settings.data_dir),
            "export",
            "leads",
            "--tenant",
            tenant.slug,
            "--output",
            str(jsonl),
        )
        assert len(jsonl.read_text(encoding="utf-8").splitlines()) == 2


def test_the_normalizer_process_gives_what_the_thread_gives(tmp_path: Path) -> None:
    """Chunks cross to the normalizer process and back by pickling: nothing is lost."""
    path = tmp_path / "messy.csv"
    path.write_text(MESSY, encoding="utf-8")
    layout = csv_import.plan_layout(path, {"Ville": "city"})
    rows = [row.fields for row in csv_import.read_rows(path, layout) if not row.errors]
    policy = intake.CapturePolicy()
    here = intake.prepare(rows, clean_lead, "DE", policy)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        there = process.submit(intake.prepare, rows, clean_lead, "DE", policy).result()
    assert there == here
    assert [r.status for r in there.results] == ["accepted", "rejected", "accepted", "accepted"]
