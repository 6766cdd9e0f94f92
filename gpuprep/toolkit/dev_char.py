"""Legacy mode's /dev/char links: NVIDIA's device nodes and the udev rule that links them at boot
(NVIDIA/nvidia-container-toolkit 48, 1227; aws/amazon-ecs-ami 483). Read by the dev-char-links step and the
toolkit-dev-char check alike.
"""

from __future__ import annotations

import os
import stat

from gpuprep.host import Host

DEV_CHAR_RULE = "/etc/udev/rules.d/71-nvidia-dev-char.rules"


def nvidia_nodes(host: Host) -> list[tuple[str, int, int]]:
    """NVIDIA's device nodes (path, major, minor) whose /dev/char links runc needs with the systemd cgroup driver."""
    dev = host.path("/dev")
    out: list[tuple[str, int, int]] = []
    try:
        names = sorted(os.listdir(dev))
    except OSError:
        return []
    for name in names:
        if not name.startswith("nvidia"):
            continue
        try:
            st = os.stat(dev / name)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            out.append((f"/dev/{name}", os.major(st.st_rdev), os.minor(st.st_rdev)))
    return out
