"""Provider webhooks (Meta Lead Ads, WhatsApp Cloud API): lead messages, and the pre-tenant
look-up of a provider source.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 19:05:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lead_messages',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('lead_id', sa.UUID(), nullable=True),
    sa.Column('source_id', sa.UUID(), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('direction', sa.String(length=10), nullable=False),
    sa.Column('provider_message_id', sa.String(length=200), nullable=False),
    sa.Column('message_type', sa.String(length=30), nullable=False),
    sa.Column('body', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_messages_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_lead_messages_source_id_sources'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_lead_messages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_messages')),
    sa.UniqueConstraint('tenant_id', 'provider_message_id', name=op.f('uq_lead_messages_tenant_id'))
    )
    op.create_index(op.f('ix_lead_messages_lead_id'), 'lead_messages', ['lead_id'], unique=False)
    op.create_index(op.f('ix_lead_messages_tenant_id'), 'lead_messages', ['tenant_id'], unique=False)
    for table in NEW_TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = app_current_tenant()) "
            "WITH CHECK (tenant_id = app_current_tenant())"
        )
    # Before the tenant is known, a provider webhook may read exactly one source's tenant,
    # encrypted configuration and intake status.
    op.execute(
        """
        CREATE FUNCTION auth_find_provider_source(p_id uuid)
        RETURNS TABLE (tenant_id uuid, config_encrypted bytea, status varchar,
                       is_personal_profile boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT tenant_id, config_encrypted, status, is_personal_profile
              FROM sources WHERE id = p_id $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION auth_find_provider_source(uuid) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS auth_find_provider_source(uuid)")
    op.drop_index(op.f('ix_lead_messages_tenant_id'), table_name='lead_messages')
    op.drop_index(op.f('ix_lead_messages_lead_id'), table_name='lead_messages')
    op.drop_table('lead_messages')


NEW_TENANT_TABLES = ("lead_messages",)
