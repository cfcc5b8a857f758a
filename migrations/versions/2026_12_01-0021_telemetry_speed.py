"""Telemetry, faster: delivery events de-duplicated on a 16-byte key instead of the provider's
id of up to 300 characters (and no index of their own on tenant_id: the unique key and the
message index both lead with it); room on the messages' pages for their delivery state to be
updated in place (HOT: no index rewritten); the funnel's messages trigger writing a lead's
rollup row only when one of its times changes; and a hashed lead id in the rollup, indexed, for
the funnel's deterministic sample of a large cohort.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The event's identity across provider retries, 16 bytes: the MD5 of "provider:event id"
# (de-duplication among signed provider events, not a defence: any well-spread 128-bit digest
# would do, and md5 is the one PostgreSQL computes in a generated column). Computed by the
# database for every row, whoever writes it; `telemetry.service.event_key` is the same.
EVENT_KEY = "md5(provider::text || ':' || provider_event_id::text)::uuid"


def upgrade() -> None:
    op.add_column(
        'delivery_events',
        sa.Column('event_key', sa.UUID(), sa.Computed(EVENT_KEY, persisted=True), nullable=False),
    )
    op.drop_constraint('uq_delivery_events_tenant_id', 'delivery_events', type_='unique')
    op.create_unique_constraint(
        op.f('uq_delivery_events_tenant_id'), 'delivery_events', ['tenant_id', 'event_key']
    )
    op.drop_index(op.f('ix_delivery_events_tenant_id'), table_name='delivery_events')

    # A delivery event rewrites a few columns of its message, none of them indexed: with room
    # left on the page the new version stays there and no index of `messages` is touched.
    # Pages written from now on keep the room; existing ones get it when rewritten.
    op.execute("ALTER TABLE messages SET (fillfactor = 70)")

    op.execute(FUNNEL_FROM_MESSAGES.format(changed=CHANGED))
    # The same rows (a message named by both ids comes once either way) for a fifth of the
    # CPU: one scan of both indexes (BitmapOr) where the UNION sorted and de-duplicated.
    op.execute(FIND_MESSAGES.format(where=FIND_EITHER))

    # The funnel's sample: a large cohort's hours between stages are read from the leads whose
    # hashed id falls below a threshold, through this index (not from every row).
    op.add_column(
        'lead_funnel',
        sa.Column('sample_key', sa.Integer(), sa.Computed('uuid_hash(lead_id)', persisted=True), nullable=False),
    )
    op.create_index('ix_lead_funnel_tenant_id_sample_key', 'lead_funnel', ['tenant_id', 'sample_key'], unique=False)
    # Each stage rewrites a lead's rollup row: room on the page keeps the new version there.
    op.execute("ALTER TABLE lead_funnel SET (fillfactor = 90)")


def downgrade() -> None:
    op.execute("ALTER TABLE lead_funnel RESET (fillfactor)")
    op.drop_index('ix_lead_funnel_tenant_id_sample_key', table_name='lead_funnel')
    op.drop_column('lead_funnel', 'sample_key')
    op.execute(FIND_MESSAGES.format(where=FIND_UNION))
    op.execute(FUNNEL_FROM_MESSAGES.format(changed="true"))
    op.execute("ALTER TABLE messages RESET (fillfactor)")
    op.create_index(op.f('ix_delivery_events_tenant_id'), 'delivery_events', ['tenant_id'], unique=False)
    op.drop_constraint('uq_delivery_events_tenant_id', 'delivery_events', type_='unique')
    op.create_unique_constraint(
        op.f('uq_delivery_events_tenant_id'),
        'delivery_events',
        ['tenant_id', 'provider', 'provider_event_id'],
    )
    op.drop_column('delivery_events', 'event_key')


# Migration 0019's function with one more condition: a lead's row is written only when one
# of its times moves. A delivery event after the first (an open, a click, a late delivered)
# changes none, and a row rewritten for nothing still costs a new version and its WAL.
CHANGED = """(
        f.sent_live_at IS DISTINCT FROM least(f.sent_live_at, t.sent_live)
        OR f.sent_dry_at IS DISTINCT FROM least(f.sent_dry_at, t.sent_dry)
        OR f.delivered_live_at IS DISTINCT FROM least(f.delivered_live_at, t.delivered_live)
        OR f.delivered_dry_at IS DISTINCT FROM least(f.delivered_dry_at, t.delivered_dry)
        OR f.replied_live_at IS DISTINCT FROM least(f.replied_live_at, t.replied_live)
        OR f.replied_dry_at IS DISTINCT FROM least(f.replied_dry_at, t.replied_dry))"""
FUNNEL_FROM_MESSAGES = """
    CREATE OR REPLACE FUNCTION funnel_from_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE lead_funnel f SET
        sent_live_at = least(f.sent_live_at, t.sent_live),
        sent_dry_at = least(f.sent_dry_at, t.sent_dry),
        delivered_live_at = least(f.delivered_live_at, t.delivered_live),
        delivered_dry_at = least(f.delivered_dry_at, t.delivered_dry),
        replied_live_at = least(f.replied_live_at, t.replied_live),
        replied_dry_at = least(f.replied_dry_at, t.replied_dry)
      FROM (SELECT lead_id,
                   min(coalesce(sent_at, created_at)) FILTER (WHERE NOT dry_run) AS sent_live,
                   min(coalesce(sent_at, created_at)) FILTER (WHERE dry_run) AS sent_dry,
                   min(delivered_at) FILTER (WHERE NOT dry_run) AS delivered_live,
                   min(delivered_at) FILTER (WHERE dry_run) AS delivered_dry,
                   min(replied_at) FILTER (WHERE NOT dry_run) AS replied_live,
                   min(replied_at) FILTER (WHERE dry_run) AS replied_dry
            FROM new_rows WHERE status = 'sent' GROUP BY lead_id) t
      WHERE f.lead_id = t.lead_id AND {changed};
      RETURN NULL;
    END $$
"""

# Migration 0017's placement look-up (same signature, same rows), its body below.
FIND_MESSAGES = """
    CREATE OR REPLACE FUNCTION telemetry_find_messages(p_ids uuid[], p_provider_ids text[])
    RETURNS TABLE (id uuid, tenant_id uuid, provider varchar, provider_message_id varchar)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id, tenant_id, provider, provider_message_id FROM messages
          {where} $$
"""
FIND_EITHER = "WHERE id = ANY(p_ids) OR provider_message_id = ANY(p_provider_ids)"
FIND_UNION = """WHERE id = ANY(p_ids)
          UNION
          SELECT id, tenant_id, provider, provider_message_id FROM messages
          WHERE provider_message_id = ANY(p_provider_ids)"""
