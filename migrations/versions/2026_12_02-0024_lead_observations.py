"""Provenance as one row per observation: `lead_observations` holds what one source said of a
lead at one moment — every field with the value kept and the raw value it came from, as a
jsonb object — where `lead_field_values` held a row per field.

An import observes eight fields of a lead at once. A row per field cost PostgreSQL six rows,
twelve foreign-key checks (lead and source, per row) and twelve index entries a lead: about
half of its work in an import (pg_stat_statements, `python -m bench.capture --statements`).
One row costs one of each. Readers unnest the object (`LeadObservation.field_observations`).

Existing rows are regrouped losslessly: the rows one statement wrote for one lead (same
source, import and moment) become one observation, and a field seen twice in such a group
(two rows of one file for the same person) opens a second observation.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RLS = (
    "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY tenant_isolation ON {table} USING (tenant_id = app_current_tenant()) "
    "WITH CHECK (tenant_id = app_current_tenant())",
)
ANALYZE = """
    CREATE OR REPLACE FUNCTION app_analyze_leads() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    BEGIN
        ANALYZE leads, {provenance}, lead_external_ids, lead_funnel;
    END $$
"""


def upgrade() -> None:
    op.create_table('lead_observations',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('source_id', sa.UUID(), nullable=False),
    sa.Column('import_id', sa.UUID(), nullable=True),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fields', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('lead_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_observations_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_lead_observations_source_id_sources'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_observations'))
    )
    op.create_index(op.f('ix_lead_observations_lead_id'), 'lead_observations', ['lead_id'], unique=False)
    for statement in RLS:
        op.execute(statement.format(table="lead_observations"))
    op.execute(
        """
        INSERT INTO lead_observations (tenant_id, lead_id, source_id, import_id, observed_at, fields)
        SELECT tenant_id, lead_id, source_id, import_id, observed_at,
               jsonb_object_agg(field, jsonb_build_object('value', value, 'raw_value', raw_value))
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY lead_id, source_id, import_id, observed_at, field ORDER BY id
            ) AS repeat
            FROM lead_field_values
        ) AS v
        GROUP BY tenant_id, lead_id, source_id, import_id, observed_at, repeat
        ORDER BY min(id)
        """
    )
    op.execute(ANALYZE.format(provenance="lead_observations"))
    op.drop_table('lead_field_values')


def downgrade() -> None:
    op.create_table('lead_field_values',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('lead_id', sa.UUID(), nullable=False),
    sa.Column('field', sa.String(length=50), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('raw_value', sa.Text(), nullable=True),
    sa.Column('source_id', sa.UUID(), nullable=False),
    sa.Column('import_id', sa.UUID(), nullable=True),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_field_values_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_lead_field_values_source_id_sources'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_field_values'))
    )
    op.create_index(op.f('ix_lead_field_values_lead_id'), 'lead_field_values', ['lead_id'], unique=False)
    for statement in RLS:
        op.execute(statement.format(table="lead_field_values"))
    op.execute(
        """
        INSERT INTO lead_field_values (tenant_id, lead_id, field, value, raw_value, source_id,
                                       import_id, observed_at)
        SELECT o.tenant_id, o.lead_id, f.key, f.value->>'value', f.value->>'raw_value',
               o.source_id, o.import_id, o.observed_at
        FROM lead_observations o, jsonb_each(o.fields) AS f
        ORDER BY o.id, f.key
        """
    )
    op.execute(ANALYZE.format(provenance="lead_field_values"))
    op.drop_index(op.f('ix_lead_observations_lead_id'), table_name='lead_observations')
    op.drop_table('lead_observations')
