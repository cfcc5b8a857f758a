"""What every benchmark shares: a throwaway PostgreSQL cluster (fsync on), the LeadRelay database
built by the migrations, CPU accounting from /proc, and the figures they report."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from leadrelay.core import embedded_pg
from leadrelay.core.db import DatabaseUrls, ensure_database
from leadrelay.core.migrate import migrate
from leadrelay.core.settings import Settings

BENCH_DATABASE = "leadrelay_bench"
APP_ROLE = "leadrelay_app"
# A throwaway cluster on loopback, removed at the end of the run.
APP_PASSWORD = "app-bench-password"  # noqa: S105
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running throwaway cluster with the LeadRelay schema; `data_dir` doubles as the app's."""

    server: embedded_pg.EmbeddedServer
    urls: DatabaseUrls
    data_dir: Path
    fast_unsafe: bool

    def settings(self) -> Settings:
        return Settings(
            env="test",
            database_url=self.urls.owner,
            database_app_url=self.urls.app,
            data_dir=self.data_dir / "var",
            log_level="WARNING",
        )

    @property
    def durability(self) -> str:
        if self.fast_unsafe:
            return "fsync OFF (fast_unsafe: figures are NOT durable-write figures)"
        return "fsync ON, synchronous_commit on (durable writes)"


# --- stopping by itself ----------------------------------------------------------------------

# What to undo if the watchdog ends the run: servers and clusters started and not yet stopped.
_pending_cleanups: list[Callable[[], None]] = []


@contextmanager
def cleanup_if_cut_short(action: Callable[[], None]) -> Iterator[None]:
    """Within the block, `action` runs if the watchdog ends the run."""
    _pending_cleanups.append(action)
    try:
        yield
    finally:
        _pending_cleanups.remove(action)


def start_watchdog(seconds: float) -> threading.Timer:
    """After `seconds`, stop whatever is still running and exit with status 3, even if the
    main thread hangs (a signal would not do: uvloop swallows exceptions from handlers)."""

    def expire() -> None:
        print(
            f"\nbenchmarks exceeded {seconds:.0f}s: stopping what they started, exiting",
            file=sys.stderr,
            flush=True,
        )
        for action in reversed(_pending_cleanups):
            with contextlib.suppress(Exception):
                action()
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


# `--statements` on a benchmark: PostgreSQL counts every statement (nested ones too: triggers,
# foreign-key checks), and the run ends with the costliest. How the capture import's quadratic
# e-mail look-up and its stale statistics were found.
STATEMENT_SETTINGS = (
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track=all",
)


@contextmanager
def cluster(*, fast_unsafe: bool = False, statements: bool = False) -> Iterator[Cluster]:
    """Start a cluster in a temporary directory, migrate it, and remove everything afterwards;
    with `statements`, count them (`print_statements`)."""
    data_dir = Path(tempfile.mkdtemp(prefix="leadrelay-bench-"))
    server = embedded_pg.EmbeddedServer(data_dir, free_port())

    def remove() -> None:
        embedded_pg.stop(server)
        shutil.rmtree(data_dir, ignore_errors=True)

    with cleanup_if_cut_short(remove):
        try:
            embedded_pg.ensure_running(
                server,
                fast_unsafe=fast_unsafe,
                settings=STATEMENT_SETTINGS if statements else (),
            )
            ensure_database(server.url(), BENCH_DATABASE)
            if statements:
                with psycopg.connect(server.url(database=BENCH_DATABASE)) as connection:
                    connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            port = server.port
            urls = DatabaseUrls(
                owner=server.url(database=BENCH_DATABASE),
                app=f"postgresql://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{port}/{BENCH_DATABASE}",
                app_role=APP_ROLE,
                app_password=APP_PASSWORD,
            )
            migrate(urls)
            yield Cluster(server, urls, data_dir, fast_unsafe)
        finally:
            remove()


def reset_statements(c: Cluster) -> None:
    """Start counting afresh (after a setup that is not measured)."""
    with psycopg.connect(c.urls.owner) as connection:
        connection.execute("SELECT pg_stat_statements_reset()")


def print_statements(c: Cluster, *, most: int = 15) -> None:
    """The statements that took PostgreSQL the most time since the last reset, nested ones
    included (a trigger's statement is also in its caller's time)."""
    with psycopg.connect(c.urls.owner) as connection:
        rows = connection.execute(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') "
            "FROM pg_stat_statements WHERE query NOT LIKE '%%pg_stat_statements%%' "
            "ORDER BY total_exec_time DESC LIMIT %s",
            (most,),
        ).fetchall()
    heading(f"PostgreSQL's {most} costliest statements (pg_stat_statements, track=all)")
    print(
        table(
            ["calls", "ms", "ms/call", "rows", "statement"],
            [
                [f"{calls:,}", f"{ms:,.0f}", f"{ms / max(calls, 1):.3f}", f"{n:,}", query[:110]]
                for calls, ms, n, query in rows
            ],
        )
    )


# --- machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(c: Cluster) -> list[tuple[str, str]]:
    with psycopg.connect(c.urls.owner, autocommit=True) as connection:
        version = connection.execute("SHOW server_version").fetchone()
        settings: dict[str, str] = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["fsync", "synchronous_commit", "shared_buffers", "wal_level"],),
            ).fetchall()
        )
    pg = f"PostgreSQL {version[0] if version else '?'} (embedded, {c.server.url()})"
    durability = (
        f"fsync={settings.get('fsync')}, synchronous_commit={settings.get('synchronous_commit')}"
        f", shared_buffers={int(settings.get('shared_buffers', '0')) * 8 // 1024} MB"
    )
    return [
        ("cores", f"{os.cpu_count()} ({_cpu_model()})"),
        ("python", f"{sys.version.split()[0]} ({platform.python_implementation()})"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("database", pg),
        ("durability", durability),
        ("network", "loopback only (127.0.0.1)"),
    ]


# --- CPU accounting ------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ')' is space-separated.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def postgres_pids(c: Cluster) -> list[int]:
    """The postmaster and every process it forked (backends, WAL writer, checkpointer...)."""
    postmaster = int((c.server.pgdata / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[0] == postmaster:
            pids.append(int(entry.name))
    return pids


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting, not stolen)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _TICKS


def _io_stalled() -> float:
    """Seconds during which some task on the machine waited for I/O (pressure stall
    information; 0 where the kernel does not offer it)."""
    try:
        first = Path("/proc/pressure/io").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0
    return int(first.rsplit("total=", 1)[1]) / 1e6


class CpuMeter:
    """CPU seconds used by groups of processes between `start()` and `stop()`; with `foreign`,
    also what the rest of the machine used meanwhile under the name "foreign" (other people's
    test runs may share these cores, and the figures are only as good as the quiet they were
    taken in). Kernel threads flushing our own writes count as foreign: a few hundredths of a
    core is normal. `io_stalled` is how long some task waited for the disk meanwhile: our own
    commits cause some; much more means the disk was shared too."""

    def __init__(self, groups: dict[str, Sequence[int]], *, foreign: bool = True) -> None:
        self.groups = groups
        self.foreign = foreign
        self._before: dict[int, float] = {}
        self._busy_before = 0.0
        self._stalled_before = 0.0
        self.used: dict[str, float] = {}
        self.io_stalled = 0.0

    def _sample(self) -> dict[int, float]:
        sample: dict[int, float] = {}
        for pids in self.groups.values():
            for pid in pids:
                if (stat := _proc_stat(pid)) is not None:
                    sample[pid] = stat[1]
        return sample

    def start(self) -> None:
        self._before = self._sample()
        self._busy_before = _machine_busy()
        self._stalled_before = _io_stalled()

    def stop(self) -> dict[str, float]:
        busy = _machine_busy() - self._busy_before
        self.io_stalled = _io_stalled() - self._stalled_before
        after = self._sample()
        self.used = {
            name: sum(after.get(pid, 0.0) - self._before.get(pid, 0.0) for pid in pids)
            for name, pids in self.groups.items()
        }
        if self.foreign:
            self.used["foreign"] = max(0.0, busy - sum(self.used.values()))
        return self.used

    def describe(self, seconds: float) -> str:
        """e.g. 'server 0.97, client 0.61, postgres 0.35, foreign 0.02' (cores) over `seconds`."""
        return ", ".join(f"{name} {used / seconds:.2f}" for name, used in self.used.items())


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """One capability's figure beside the raw limit measured in the same run."""

    name: str
    value: float
    raw_name: str
    raw_value: float
    unit: str
    target_ratio: float | None = None
    notes: list[str] = field(default_factory=list)
    # Cores that processes other than the benchmark's own used while it measured, and the
    # share of that time some task waited for the disk (the worst of the phases behind the
    # figure): well above zero, the machine was shared and the figures are pessimistic.
    foreign_load: float = 0.0
    io_stall: float = 0.0

    @property
    def ratio(self) -> float:
        return self.value / self.raw_value if self.raw_value else float("nan")

    @property
    def met(self) -> bool | None:
        return None if self.target_ratio is None else self.ratio >= self.target_ratio


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted `values` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    body = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(body[0]), rule, *(line(row) for row in body[1:])])


def rate(value: float) -> str:
    return f"{value:,.0f}"


def heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 78 - len(title)), flush=True)
