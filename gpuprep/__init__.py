"""gpuprep: turn a GPU instance into a sealed, self-testing ECS / AWS Batch container host."""

from __future__ import annotations

_cached_version: str | None = None


def __getattr__(name: str) -> str:
    # Lazy (PEP 562): a source checkout asks git for it, which only `--version` and reports need.
    global _cached_version
    if name == "__version__":
        if _cached_version is None:
            from gpuprep.version import current

            _cached_version = current()
        return _cached_version
    raise AttributeError(f"module 'gpuprep' has no attribute {name!r}")
