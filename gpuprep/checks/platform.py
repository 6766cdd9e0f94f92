"""platform checks (being written)."""

CHECKS: list = []
