"""The ECS domain: ecs.config, the agent's state and service, nvidia-gpu-info.json; the steps of install and
seal that act on them, and doctor's checks of them."""
