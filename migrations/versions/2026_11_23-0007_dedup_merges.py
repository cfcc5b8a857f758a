"""Dedup: pg_trgm blocking indexes, merges (undoable) and the review queue.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TENANT_TABLES = ("lead_merges", "match_reviews")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index("ix_leads_tenant_id_domain", "leads", ["tenant_id", "domain"], unique=False)
    op.create_index(
        "ix_leads_company_key_trgm",
        "leads",
        ["company_key"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"company_key": "gin_trgm_ops"},
    )
    op.create_table(
        "lead_merges",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("survivor_id", sa.UUID(), nullable=False),
        sa.Column("merged_id", sa.UUID(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_id"],
            ["leads.id"],
            name=op.f("fk_lead_merges_merged_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["leads.id"],
            name=op.f("fk_lead_merges_survivor_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_lead_merges_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_merges")),
    )
    op.create_index(op.f("ix_lead_merges_merged_id"), "lead_merges", ["merged_id"])
    op.create_index(op.f("ix_lead_merges_survivor_id"), "lead_merges", ["survivor_id"])
    op.create_index(op.f("ix_lead_merges_tenant_id"), "lead_merges", ["tenant_id"])
    op.create_table(
        "match_reviews",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("lead_a_id", sa.UUID(), nullable=False),
        sa.Column("lead_b_id", sa.UUID(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("contributions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=20), server_default=sa.text("'open'"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_a_id"],
            ["leads.id"],
            name=op.f("fk_match_reviews_lead_a_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_b_id"],
            ["leads.id"],
            name=op.f("fk_match_reviews_lead_b_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_match_reviews_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_reviews")),
        sa.UniqueConstraint(
            "tenant_id", "lead_a_id", "lead_b_id", name=op.f("uq_match_reviews_tenant_id")
        ),
    )
    op.create_index(op.f("ix_match_reviews_tenant_id"), "match_reviews", ["tenant_id"])
    for table in NEW_TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = app_current_tenant()) "
            "WITH CHECK (tenant_id = app_current_tenant())"
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_match_reviews_tenant_id"), table_name="match_reviews")
    op.drop_table("match_reviews")
    op.drop_index(op.f("ix_lead_merges_tenant_id"), table_name="lead_merges")
    op.drop_index(op.f("ix_lead_merges_survivor_id"), table_name="lead_merges")
    op.drop_index(op.f("ix_lead_merges_merged_id"), table_name="lead_merges")
    op.drop_table("lead_merges")
    op.drop_index("ix_leads_company_key_trgm", table_name="leads")
    op.drop_index("ix_leads_tenant_id_domain", table_name="leads")
