"""platform checks: is this a system gpuprep knows, and may doctor see everything it checks?"""

from __future__ import annotations

from gpuprep.report import Status
from gpuprep.runner.checks import Check, Probes, Verdict

SUPPORTED = (
    "Amazon Linux 2018.03, 2 and 2023; RHEL, CentOS, Rocky and AlmaLinux 7 to 9 (install, seal, doctor); "
    "Ubuntu 20.04, 22.04 and 24.04 (doctor)"
)

# What a non-root doctor cannot see, and why (file modes and socket groups on the hosts we serve).
LIMITED_WITHOUT_ROOT = {
    "gpu-xid": "the kernel log (/dev/kmsg and the system journal need root or group systemd-journal/adm)",
    "docker": "the Docker socket (root or group docker)",
    "ecs": "/var/lib/ecs (the agent's state and nvidia-gpu-info.json are 0700 root)",
    "packages": "which process holds the package manager's lock",
}


def check_os(probes: Probes) -> Verdict:
    p = probes.platform
    data = {"id": p.id, "version_id": p.version_id, "family": p.family, "package_manager": p.package_manager,
            "init": p.init, "rpm": p.rpm}
    if not p.supported:
        reason = p.reason or f"{p.name} is not a platform gpuprep supports"
        return Verdict(
            Status.UNKNOWN, f"unknown platform: {reason}; checks that depend on it may be skipped",
            f"gpuprep supports {SUPPORTED}; `cat /etc/os-release` shows what this is", data,
        )
    if not p.rpm:
        return Verdict(
            Status.OK,
            f"{p.name}: doctor supported; install and seal need an RPM platform (Amazon Linux, RHEL and clones)",
            data=data,
        )
    return Verdict(Status.OK, f"{p.name}: install, seal and doctor supported ({p.package_manager}, {p.init})",
                   data=data)


def check_root(probes: Probes) -> Verdict:
    host = probes.host
    if host.is_root:
        return Verdict(Status.OK, "running as root", data={"euid": host.euid})
    limited = [f"{what} ({why})" for what, why in LIMITED_WITHOUT_ROOT.items()]
    return Verdict(
        Status.WARNING,
        f"not running as root (euid {host.euid}): some checks may see less: " + "; ".join(limited),
        "run `sudo gpuprep doctor`",
        {"euid": host.euid, "limited": list(LIMITED_WITHOUT_ROOT)},
    )


CHECKS = [
    Check("platform-os", "platform", "the distribution and version are supported", check_os, timeout=2.0),
    Check("platform-root", "platform", "running as root (otherwise some checks see less)", check_root, timeout=1.0),
]
