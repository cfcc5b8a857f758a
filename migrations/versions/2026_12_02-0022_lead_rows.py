"""A lead's own rows (provenance, external ids) keep their foreign key to the lead and lose
the one to the tenant, with its index: an import writes seven provenance rows per lead and
each key is a check per row, while deleting a tenant deletes its leads and these rows with
them. Leads' pages keep a fifth free, so that what jobs change after intake (verification,
flags, scores' updated_at) is written in place (HOT) instead of into every index of leads, the
trigram GiST ones included. The funnel's leads trigger writes a rollup row only when the
lead's source, merge state or verified time changes (a verification or a merge rewrote every
row for nothing).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEAD_ROWS = ("lead_field_values", "lead_external_ids")


def upgrade() -> None:
    for table in LEAD_ROWS:
        op.drop_constraint(op.f(f'fk_{table}_tenant_id_tenants'), table, type_='foreignkey')
        op.drop_index(op.f(f'ix_{table}_tenant_id'), table_name=table)
    # Pages written from now on keep the room; existing ones get it when rewritten.
    op.execute("ALTER TABLE leads SET (fillfactor = 80)")
    op.execute(FUNNEL_FROM_LEADS.format(changed=CHANGED))


def downgrade() -> None:
    op.execute(FUNNEL_FROM_LEADS.format(changed="true"))
    op.execute("ALTER TABLE leads RESET (fillfactor)")
    for table in LEAD_ROWS:
        op.create_index(op.f(f'ix_{table}_tenant_id'), table, ['tenant_id'], unique=False)
        op.create_foreign_key(
            op.f(f'fk_{table}_tenant_id_tenants'),
            table,
            'tenants',
            ['tenant_id'],
            ['id'],
            ondelete='CASCADE',
        )


# Migration 0019's function with one more condition on the update.
CHANGED = """(
        lead_funnel.source_id IS DISTINCT FROM excluded.source_id
        OR lead_funnel.merged IS DISTINCT FROM excluded.merged
        OR lead_funnel.verified_at
           IS DISTINCT FROM least(lead_funnel.verified_at, excluded.verified_at))"""
FUNNEL_FROM_LEADS = """
    CREATE OR REPLACE FUNCTION funnel_from_leads() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO lead_funnel (tenant_id, lead_id, source_id, merged, created_at, verified_at)
      SELECT n.tenant_id, n.id, n.source_id, n.status = 'merged', n.created_at,
             funnel_verified_at(n.verification, n.created_at)
      FROM new_rows n
      ON CONFLICT (lead_id) DO UPDATE SET
        source_id = excluded.source_id,
        merged = excluded.merged,
        verified_at = least(lead_funnel.verified_at, excluded.verified_at)
      WHERE {changed};
      RETURN NULL;
    END $$
"""
