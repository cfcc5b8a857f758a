"""Dedup blocking on company names by nearest neighbours (GiST) instead of a GIN threshold.

A GIN `%` probe must collect every similar name before LIMIT applies: with common words
("Acme Holdings Ltd") that is thousands of rows per lead. A GiST index answers
`ORDER BY company_key <-> :name LIMIT k` by walking the nearest entries only. The partial
index serves leads with a domain, which are only compared on company with leads without one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_leads_company_key_trgm", table_name="leads")
    op.create_index(
        "ix_leads_company_key_knn",
        "leads",
        ["company_key"],
        postgresql_using="gist",
        postgresql_ops={"company_key": "gist_trgm_ops"},
    )
    op.create_index(
        "ix_leads_company_key_knn_no_domain",
        "leads",
        ["company_key"],
        postgresql_using="gist",
        postgresql_ops={"company_key": "gist_trgm_ops"},
        postgresql_where="domain IS NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_leads_company_key_knn_no_domain", table_name="leads")
    op.drop_index("ix_leads_company_key_knn", table_name="leads")
    op.create_index(
        "ix_leads_company_key_trgm",
        "leads",
        ["company_key"],
        postgresql_using="gin",
        postgresql_ops={"company_key": "gin_trgm_ops"},
    )
