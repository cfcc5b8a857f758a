"""The clock, injected: domain code takes `now`; only the edges ask this module."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
