"""The bridge from the normalizers to intake: one row in, one `CleanLead` out."""

from __future__ import annotations

from collections.abc import Mapping

from leadrelay.capture.intake import CleanLead
from leadrelay.capture.normalize import normalize_lead


def clean_lead(fields: Mapping[str, str | None], default_region: str | None) -> CleanLead:
    normalized = normalize_lead(fields, default_region=default_region)
    flags = set(normalized.flags)
    if normalized.email_detail is not None and normalized.email_detail.is_free:
        flags.add("personal_email")  # what a tenant's business-address policy acts on
    title = (fields.get("title") or "").strip() or None
    return CleanLead(
        values={
            "full_name": normalized.full_name,
            # Local parts are case-sensitive in theory only: one lowercase form matches them all.
            "email": normalized.email.lower() if normalized.email else None,
            "phone_e164": normalized.phone_e164,
            "phone_type": normalized.phone_type,
            "company": normalized.company,
            "company_key": normalized.company_key,
            "domain": normalized.domain,
            "city": normalized.city,
            "country": normalized.country,
            "title": title[:200] if title else None,
        },
        raw=dict(fields),
        flags=tuple(sorted(flags)),
        errors=tuple(normalized.error_dicts),
    )
