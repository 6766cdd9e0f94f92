"""packages checks (being written)."""

CHECKS: list = []
