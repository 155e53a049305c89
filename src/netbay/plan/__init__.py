"""Pure planning: names, addresses and choices derived from specs and records, no I/O."""
