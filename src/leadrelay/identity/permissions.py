"""The permission matrix: which role may do what. Checked on every route."""

from __future__ import annotations

from enum import StrEnum

from leadrelay.identity.models import Role


class Permission(StrEnum):
    TENANT_READ = "tenant:read"
    TENANT_MANAGE = "tenant:manage"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    API_KEYS_MANAGE = "api_keys:manage"
    AUDIT_READ = "audit:read"
    AUDIT_EXPORT = "audit:export"
    DEAD_LETTERS_READ = "dead_letters:read"
    DEAD_LETTERS_REPLAY = "dead_letters:replay"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_MANAGE = "webhooks:manage"
    SOURCES_READ = "sources:read"
    SOURCES_MANAGE = "sources:manage"
    LEADS_READ = "leads:read"
    LEADS_WRITE = "leads:write"
    APPROVALS_REVIEW = "approvals:review"
    SCORING_READ = "scoring:read"
    SCORING_MANAGE = "scoring:manage"  # edit and activate ICP versions, import outcomes, CRM
    ROUTING_READ = "routing:read"
    ROUTING_MANAGE = "routing:manage"  # rules, teams, reps, hours, time off, reassignments
    DRAFTS_READ = "drafts:read"
    DRAFTS_WRITE = "drafts:write"  # generate, edit and submit drafts
    TEMPLATES_MANAGE = "templates:manage"
    APPROVAL_POLICY = "approvals:policy"  # approval required on/off, four-eyes
    OUTREACH_READ = "outreach:read"  # messages, dry-run outbox, suppression and DNC look-ups
    OUTREACH_SEND = "outreach:send"  # hand an approved draft to the policy guard and a channel
    SUPPRESSIONS_MANAGE = "suppressions:manage"  # record opt-outs, import DNC lists, opt back in
    OUTREACH_POLICY = "outreach:policy"  # leave dry-run, caps, windows
    COMPLIANCE_MANAGE = "compliance:manage"  # retention policy and sweeps
    DSAR_MANAGE = "dsar:manage"  # open, export, erase and reject data-subject requests
    COMPLIANCE_READ = "compliance:read"  # the posture snapshot, sending-domain checks


_ALL = frozenset(Permission)
P = Permission

MATRIX: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL - {P.TENANT_MANAGE},  # includes the approval policy
    Role.MANAGER: frozenset(
        {
            P.TENANT_READ,
            P.SOURCES_READ,
            P.USERS_READ,
            P.AUDIT_READ,
            P.WEBHOOKS_READ,
            P.DEAD_LETTERS_READ,
            P.LEADS_READ,
            P.LEADS_WRITE,
            P.APPROVALS_REVIEW,
            P.SCORING_READ,
            P.SCORING_MANAGE,
            P.ROUTING_READ,
            P.ROUTING_MANAGE,
            P.DRAFTS_READ,
            P.DRAFTS_WRITE,
            P.TEMPLATES_MANAGE,
            P.OUTREACH_READ,
            P.OUTREACH_SEND,
            P.SUPPRESSIONS_MANAGE,
            P.COMPLIANCE_READ,
        }
    ),
    Role.REVIEWER: frozenset(
        {P.TENANT_READ, P.LEADS_READ, P.APPROVALS_REVIEW, P.DRAFTS_READ, P.OUTREACH_READ}
    ),
    Role.REP: frozenset(
        {
            P.TENANT_READ,
            P.SOURCES_READ,
            P.LEADS_READ,
            P.LEADS_WRITE,
            P.SCORING_READ,
            P.ROUTING_READ,
            P.DRAFTS_READ,
            P.DRAFTS_WRITE,
            P.OUTREACH_READ,
            P.OUTREACH_SEND,
            # Anyone who talks to people must be able to honour "take me off your list".
            P.SUPPRESSIONS_MANAGE,
        }
    ),
    Role.OPERATOR: frozenset(
        {
            P.TENANT_READ,
            P.AUDIT_READ,
            P.AUDIT_EXPORT,
            P.DEAD_LETTERS_READ,
            P.DEAD_LETTERS_REPLAY,
            P.WEBHOOKS_READ,
            P.OUTREACH_READ,
        }
    ),
}


def permissions_for(role: Role, scopes: list[str] | None = None) -> frozenset[Permission]:
    """A role's permissions, narrowed to `scopes` when an API key names some."""
    granted = MATRIX[role]
    if scopes:
        granted = granted & frozenset(
            Permission(s) for s in scopes if s in Permission._value2member_map_
        )
    return granted


def can_grant(permissions: frozenset[Permission], role: Role) -> bool:
    """Nobody hands out, or manages someone holding, more than they hold themselves."""
    return MATRIX[role] <= permissions


def grantable_roles(permissions: frozenset[Permission]) -> list[Role]:
    return [role for role in Role if can_grant(permissions, role)]
