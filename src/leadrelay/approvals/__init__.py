"""Approvals: revisions, reviews, expiry, and the send guard nothing leaves without."""
