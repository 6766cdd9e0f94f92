"""EFA, the Elastic Fabric Adapter: its devices on this host's PCI bus.

EFA devices are PCI functions of vendor 0x1d0f with device ids 0xefa0-0xefa3 (awslabs' GPU cluster health check,
``2-efa-enumeration.sh``); the count per instance type is the knowledge table ec2-gpu-instances' ``efa`` column
(``instance_types.lookup``); the ``efa`` and ``ib_uverbs`` modules serve them.
"""

from __future__ import annotations

from gpuprep.host import Host

EFA_VENDOR = 0x1D0F
EFA_DEVICE_IDS = (0xEFA0, 0xEFA1, 0xEFA2, 0xEFA3)
EFA_MODULES = ("efa", "ib_uverbs")


def efa_functions(host: Host) -> list[str] | None:
    """The EFA devices' PCI bus ids; None where there is no sysfs to look in."""
    devices = host.path("/sys/bus/pci/devices")
    if not devices.is_dir():
        return None
    out: list[str] = []
    for dev in sorted(devices.iterdir()):
        try:
            vendor = int((dev / "vendor").read_text().strip(), 16)
            device = int((dev / "device").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        if vendor == EFA_VENDOR and device in EFA_DEVICE_IDS:
            out.append(dev.name)
    return out
