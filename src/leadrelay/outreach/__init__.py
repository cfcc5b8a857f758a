"""Outreach: the policy guard, the channels (dry-run by default) and campaigns."""
