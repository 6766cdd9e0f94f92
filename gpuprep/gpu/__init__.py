"""The GPU domain: the devices (PCI, /dev, the kernel module), their health (NVML, nvidia-smi), the kernel
log, and the checks doctor runs on them."""
