"""gpu checks (being written)."""

CHECKS: list = []
