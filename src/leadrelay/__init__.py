"""LeadRelay: lead-to-conversation platform."""
