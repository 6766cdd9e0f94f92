"""docker checks (being written)."""

CHECKS: list = []
