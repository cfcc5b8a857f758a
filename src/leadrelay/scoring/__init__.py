"""ICP scoring: versioned rule sets, the scorer, and quality from outcomes."""
