"""Retention of the audit trail: a narrow function cuts a tenant's chain prefix and moves its
checkpoint (the append-only trigger lets exactly those deletions through); and the indexes
that deletions and data-subject look-ups need.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Deleting a lead or a message looks these up (ON DELETE CASCADE / SET NULL): without an
    # index each deletion reads the whole table.
    op.create_index('ix_lead_messages_message_id', 'lead_messages', ['message_id'], unique=False)
    op.create_index('ix_leads_merged_into_id', 'leads', ['merged_into_id'], unique=False)
    op.create_index('ix_messages_draft_id', 'messages', ['draft_id'], unique=False)
    # A data-subject request names an address in any case; e-mails keep their local part's case.
    op.execute("CREATE INDEX ix_leads_tenant_id_lower_email ON leads (tenant_id, lower(email))")

    # Only the owner of audit_events (the role running this migration, and so the SECURITY
    # DEFINER function below) may delete, and only links at or before the tenant's checkpoint.
    # The app role cannot become the owner, and a session setting would not do: any role may
    # set one.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE'
               AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class
                                   WHERE oid = TG_RELID)
               AND OLD.seq <= (SELECT checkpoint_seq FROM audit_heads
                               WHERE tenant_id = OLD.tenant_id) THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    # Cut the current tenant's chain before `p_before`: the checkpoint moves to the last link
    # older than that (verification starts there), then those links go. The newest link always
    # stays, so the head is never cut. Returns how many went and the new checkpoint.
    op.execute(
        """
        CREATE FUNCTION audit_cut_prefix(p_tenant uuid, p_before timestamptz)
        RETURNS TABLE (cut bigint, checkpoint_seq bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            v_head audit_heads%ROWTYPE;
            v_seq bigint;
            v_hash varchar;
            v_cut bigint;
        BEGIN
            IF p_tenant IS DISTINCT FROM app_current_tenant() THEN
                RAISE EXCEPTION 'audit_cut_prefix: only the current tenant''s chain'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            SELECT * INTO v_head FROM audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
            IF NOT FOUND THEN
                RETURN QUERY SELECT 0::bigint, 0::bigint;
                RETURN;
            END IF;
            SELECT e.seq, e.hash INTO v_seq, v_hash FROM audit_events e
            WHERE e.tenant_id = p_tenant AND e.occurred_at < p_before
              AND e.seq > v_head.checkpoint_seq AND e.seq < v_head.seq
            ORDER BY e.seq DESC LIMIT 1;
            IF v_seq IS NULL THEN
                RETURN QUERY SELECT 0::bigint, v_head.checkpoint_seq;
                RETURN;
            END IF;
            UPDATE audit_heads h SET checkpoint_seq = v_seq, checkpoint_hash = v_hash
            WHERE h.tenant_id = p_tenant;
            DELETE FROM audit_events e WHERE e.tenant_id = p_tenant AND e.seq <= v_seq;
            GET DIAGNOSTICS v_cut = ROW_COUNT;
            RETURN QUERY SELECT v_cut, v_seq;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION audit_cut_prefix(uuid, timestamptz) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS audit_cut_prefix(uuid, timestamptz)")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute("DROP INDEX IF EXISTS ix_leads_tenant_id_lower_email")
    op.drop_index('ix_messages_draft_id', table_name='messages')
    op.drop_index('ix_leads_merged_into_id', table_name='leads')
    op.drop_index('ix_lead_messages_message_id', table_name='lead_messages')
