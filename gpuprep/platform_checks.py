"""platform checks: is this a system gpuprep knows, and may doctor see everything it checks?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from gpuprep import fixes
from gpuprep.fixes import Fix
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict

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
        return Verdict(Status.UNKNOWN, f"unknown platform: {reason}; checks that depend on it may be skipped",
                       data=data, fixes=[Fix(f"run gpuprep on a platform it supports: {SUPPORTED}"),
                                         Fix("what this is", ("cat", str(probes.host.path("/etc/os-release"))))])
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
    # gpuprep() says sudo, this run not being root; doctor is read-only, so it is offered on every platform.
    again = fixes.gpuprep(host, probes.platform, "run doctor as root", "doctor")
    return Verdict(Status.WARNING,
                   f"not running as root (euid {host.euid}): some checks may see less: " + "; ".join(limited),
                   data={"euid": host.euid, "limited": list(LIMITED_WITHOUT_ROOT)}, fixes=[again] if again else [])


@dataclass(frozen=True)
class EndOfSupport:
    ends: date
    what: str  # what ends, and what follows from it for ECS / Batch hosts
    migrate: tuple[Fix, ...]  # where to go, with the commands that get there


# AWS Batch's Ec2Configuration reference (docs.aws.amazon.com/batch/latest/APIReference/API_Ec2Configuration.html):
# support for the ECS AL2-optimized and AL2-accelerated AMIs ends on 2026-06-30, new AL2 compute environments
# are blocked from that date, and since 2026-01-12 new ECS compute environments default to AL2023 (image type
# ECS_AL2023_NVIDIA for GPU instances); AL2's os-release carries SUPPORT_END=2026-06-30 (docs/domain.md, 2026).
# The Amazon Linux AMI (2018.03) left maintenance support on 2023-12-31.
_AL2023_GPU_AMI = (
    Fix("move to the AL2023 ECS GPU AMI (its image id below) and build on it as before (install, then seal)",
        ("aws", "ssm", "get-parameter", "--name",
         "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id")),
    Fix("AWS Batch: point the compute environment at it", (
        "aws", "batch", "update-compute-environment", "--compute-environment", "NAME", "--compute-resources",
        "ec2Configuration=[{imageType=ECS_AL2023_NVIDIA}]")),
)
END_OF_SUPPORT = {
    ("amzn", "2"): EndOfSupport(
        date(2026, 6, 30),
        "Amazon Linux 2 and its ECS GPU AMI: no security updates, and AWS Batch blocks new AL2 compute environments",
        _AL2023_GPU_AMI),
    ("amzn", "2018.03"): EndOfSupport(
        date(2023, 12, 31), "the Amazon Linux AMI (2018.03): no security updates",
        _AL2023_GPU_AMI),
}
EOL_NOTICE_DAYS = 365  # a year's notice: an image pipeline needs that long to move


def support_status(platform_id: str, version_id: str, today: date) -> tuple[Status, str, dict[str, Any]] | None:
    """(status, summary, data) for a platform with a published end of support; None for the others."""
    eos = END_OF_SUPPORT.get((platform_id, version_id))
    if eos is None:
        return None
    days = (eos.ends - today).days
    data = {"support_end": eos.ends.isoformat(), "days_left": days}
    if days < 0:
        return Status.WARNING, f"past end of support since {eos.ends.isoformat()}: {eos.what}", data
    if days <= EOL_NOTICE_DAYS:
        return Status.WARNING, f"end of support on {eos.ends.isoformat()} ({days} days): {eos.what}", data
    return Status.OK, f"supported until {eos.ends.isoformat()}", data


def check_end_of_support(probes: Probes) -> Verdict:
    p = probes.platform
    found = support_status(p.id, p.version_id, datetime.now(timezone.utc).date())
    if found is None:
        raise NotApplicable(f"no end of support announced for {p.name or 'this platform'}")
    status, summary, data = found
    found_fixes = list(END_OF_SUPPORT[(p.id, p.version_id)].migrate) if status is not Status.OK else []
    return Verdict(status, f"{p.name}: {summary}", data=data, fixes=found_fixes)


CHECKS = [
    Check("platform-os", "platform", "the distribution and version are supported", check_os, timeout=2.0),
    Check("platform-root", "platform", "running as root (otherwise some checks see less)", check_root, timeout=1.0),
    Check("platform-end-of-support", "platform", "the distribution is not past (or near) its end of support "
          "(Amazon Linux 2: 2026-06-30)", check_end_of_support, timeout=1.0),
]
