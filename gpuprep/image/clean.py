"""seal's deep-clean (``--deep``): what amazon-ecs-ami's ``scripts/cleanup.sh`` removes before imaging."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from gpuprep.host import Host
from gpuprep.image.tree import FileStep, Item, declared_base, find, remove_items
from gpuprep.runner.needs import Option
from gpuprep.runner.steps import Context

log = logging.getLogger("gpuprep")

# What amazon-ecs-ami's scripts/cleanup.sh removes before imaging (docs/domain.md), in report order.
DEEP_REMOVE = (
    "/var/lib/cloud/*",  # cloud-init state: instances from the image must run cloud-init afresh
    "/etc/ssh/ssh_host_*",  # host keys: every instance makes its own at first boot
    "/root/.ssh/authorized_keys",
    "/home/*/.ssh/authorized_keys",
)
MACHINE_ID = "/etc/machine-id"  # left empty, not removed: systemd then generates one at first boot
LOG_DIR = "/var/log"
DEEP_REMOVE_AFTER_LOGS = (
    "/var/lib/dhclient/*",  # dhclient leases (AL1/AL2)
    "/var/lib/dhcp/dhclient*",
    "/var/lib/NetworkManager/*.lease",
    "/var/cache/yum/*",
    "/var/cache/dnf/*",
    "/var/lib/yum/history/*",
    "/var/lib/dnf/history*",
)
# Rotated or compressed logs are removed; live logs are truncated, keeping owner and mode.
_ROTATED = re.compile(r"(\.\d+|\.gz|\.xz|\.bz2|\.zst|-\d{8}(\.gz)?)$")


def log_items(host: Host) -> list[Item]:
    """/var/log: live log files truncated, rotated ones and journal files removed; directories kept."""
    base = declared_base(host, LOG_DIR)
    if base is None:
        return []
    items: list[Item] = []

    def walk(hp: str, rp: Path, in_journal: bool) -> None:
        try:
            names = sorted(os.listdir(rp))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for name in names:
            child = rp / name
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            chp = f"{hp}/{name}"
            if stat.S_ISDIR(st.st_mode):
                walk(chp, child, in_journal or (hp == LOG_DIR and name == "journal"))
            elif stat.S_ISREG(st.st_mode):
                # journald's binary files cannot be truncated into a valid journal: remove them.
                if in_journal or _ROTATED.search(name):
                    items.append(Item("remove", chp, "file", LOG_DIR))
                elif st.st_size > 0:
                    items.append(Item("truncate", chp, "file", LOG_DIR))
            # links and sockets under /var/log are left alone (never followed)

    walk(LOG_DIR, base, False)
    return items


class DeepCleanStep(FileStep):
    id = "deep-clean"
    title = "with --deep: cloud-init state, SSH host keys, authorized_keys, machine-id, logs, leases, yum/dnf caches"
    what = "deep-clean items"
    needs = (Option("deep", "only with --deep"),)

    def items(self, ctx: Context) -> list[Item]:
        host = ctx.host
        items: list[Item] = []
        for pattern in DEEP_REMOVE:
            items += remove_items(host, pattern)
        for hp, _, st in find(host, MACHINE_ID):
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                items.append(Item("truncate", hp, "file", "/etc"))
        items += log_items(host)
        for pattern in DEEP_REMOVE_AFTER_LOGS:
            items += remove_items(host, pattern)
        return items

    def nothing(self, ctx: Context) -> str:
        return "nothing left to clean"
