"""Use cases: one database transaction per command. Entry points call these."""
