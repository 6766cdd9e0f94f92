"""gpuprep: turn a GPU instance into a sealed, self-testing ECS / AWS Batch container host."""

__version__ = "0.1.0"
