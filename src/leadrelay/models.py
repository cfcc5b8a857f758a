"""Every table of every domain, imported once so metadata (and Alembic) sees them all."""

from leadrelay.approvals import models as approvals_models
from leadrelay.capture import dedup_models, provider_models, verification_store
from leadrelay.capture import models as capture_models
from leadrelay.compliance import models as compliance_models
from leadrelay.core import events as events_models
from leadrelay.core import idempotency as idempotency_models
from leadrelay.core import jobs_models
from leadrelay.core.db import Base
from leadrelay.identity import models as identity_models
from leadrelay.inbound import models as inbound_models
from leadrelay.outreach import models as outreach_models
from leadrelay.routing import models as routing_models
from leadrelay.scoring import models as scoring_models
from leadrelay.telemetry import models as telemetry_models
from leadrelay.webhooks import models as webhooks_models

metadata = Base.metadata

__all__ = [
    "approvals_models",
    "capture_models",
    "compliance_models",
    "dedup_models",
    "events_models",
    "idempotency_models",
    "identity_models",
    "inbound_models",
    "jobs_models",
    "metadata",
    "outreach_models",
    "provider_models",
    "routing_models",
    "scoring_models",
    "telemetry_models",
    "verification_store",
    "webhooks_models",
]
