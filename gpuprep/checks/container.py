"""container checks (being written)."""

CHECKS: list = []
