"""`app_analyze_leads()`: the planner's statistics of leads and their provenance, refreshed on
demand by a large import (the app role owns no table, so it cannot ANALYZE).

Until autovacuum first analyses a table (a minute at the soonest), the planner guesses: the
tenant's rows and `status = 'new'` each keep 0.5 % of them, so a chunk of 1,000 leads joined
by id to a table of 20,000 was planned as a nested loop comparing every pair (7 s for one
verification chunk). An import growing a table faster than autovacuum looks at it refreshes
the statistics itself, a few times over its run; ANALYZE reads a fixed sample, so it costs
the same at any size.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION app_analyze_leads() RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            ANALYZE leads, lead_field_values, lead_external_ids, lead_funnel;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS app_analyze_leads()")
