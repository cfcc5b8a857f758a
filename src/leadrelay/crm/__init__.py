"""CRM outcome sync: connectors that bring won/lost/disqualified labels back to leads."""
