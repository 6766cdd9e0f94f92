"""ecs checks (being written)."""

CHECKS: list = []
