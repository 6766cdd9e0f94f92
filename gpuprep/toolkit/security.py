"""The toolkit's security floor: NVIDIA's security bulletins for the NVIDIA Container Toolkit, as data.

Each entry is a bulletin (nvidia.custhelp.com answer id) and the first toolkit version NVIDIA names as fixed;
every version below it is affected. The toolkit's packages (nvidia-container-toolkit, -base,
libnvidia-container-tools, libnvidia-container1) always ship at one version, so the floor applies to each.
Sources: NVIDIA/cloud-native-docs ``container-toolkit/release-notes.md`` (the "This version includes updates
for" lists) and the bulletins they link.

- CVE-2024-0132, CVE-2024-0133: bulletin 5582 (September 2024), fixed in 1.16.2.
- CVE-2024-0134: bulletin 5585, fixed in 1.17.0.
- CVE-2024-0135, CVE-2024-0136, CVE-2024-0137: bulletin 5599, fixed in 1.17.1 (Bottlerocket's advisories,
  bottlerocket-os/bottlerocket-core-kit PR 353, read the bulletin so; NVIDIA's release notes list the three
  under 1.17.3, published with the bulletin in January 2025). Mitigation named by the bulletin:
  ``[nvidia-container-cli] ldconfig = "@/sbin/ldconfig"`` in /etc/nvidia-container-runtime/config.toml (the
  host's ldconfig, not one from the container image).
- CVE-2025-23359: bulletin 5616, fixed in 1.17.4.
- CVE-2025-23266, CVE-2025-23267: bulletin 5659 (July 2025), fixed in 1.17.8.

``FLOOR`` is the highest fixed version: install never selects a toolkit below it without ``--allow-vulnerable``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuprep.packages.evr import vercmp

BULLETIN = "https://nvidia.custhelp.com/app/answers/detail/a_id/{}"
# The packages the floor applies to: the toolkit's four, always one version (docs/domain.md).
PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1")


@dataclass(frozen=True)
class Advisory:
    cves: tuple[str, ...]
    fixed_in: str  # the first toolkit version NVIDIA names as fixed
    bulletin: int  # nvidia.custhelp.com answer id
    mitigation: str = ""

    @property
    def url(self) -> str:
        return BULLETIN.format(self.bulletin)

    @property
    def names(self) -> str:
        """``CVE-2024-0135, CVE-2024-0136, CVE-2024-0137``."""
        return ", ".join(self.cves)

    def as_dict(self) -> dict:
        return {"cves": list(self.cves), "fixed_in": self.fixed_in, "bulletin": self.url,
                **({"mitigation": self.mitigation} if self.mitigation else {})}


LDCONFIG_MITIGATION = '[nvidia-container-cli] ldconfig = "@/sbin/ldconfig" (the host\'s ldconfig)'

ADVISORIES: tuple[Advisory, ...] = (
    Advisory(("CVE-2024-0132", "CVE-2024-0133"), "1.16.2", 5582),
    Advisory(("CVE-2024-0134",), "1.17.0", 5585),
    Advisory(("CVE-2024-0135", "CVE-2024-0136", "CVE-2024-0137"), "1.17.1", 5599, LDCONFIG_MITIGATION),
    Advisory(("CVE-2025-23359",), "1.17.4", 5616),
    Advisory(("CVE-2025-23266", "CVE-2025-23267"), "1.17.8", 5659),
)

FLOOR = max((a.fixed_in for a in ADVISORIES), key=lambda v: tuple(int(x) for x in v.split(".")))


def upstream(version: str) -> str:
    """The toolkit's own version in a package version: ``1.17.0~rc.1`` stays (rpm orders ``~`` first), a
    Debian revision or an epoch goes (``1:1.17.7-1`` -> ``1.17.7``)."""
    version = version.split(":", 1)[-1]
    return version.split("-", 1)[0]


def advisories_for(version: str) -> list[Advisory]:
    """The bulletins whose fix ``version`` predates (oldest first); [] at or above the floor."""
    v = upstream(version)
    return [a for a in ADVISORIES if vercmp(v, a.fixed_in) < 0]


def vulnerable(name: str, version: str) -> bool:
    """A toolkit package (by name) at a version below the floor."""
    return name in PACKAGES and bool(advisories_for(version))


def cve_list(advisories: list[Advisory]) -> list[str]:
    return [c for a in advisories for c in a.cves]


def describe(version: str) -> str:
    """``1.17.7 is affected by CVE-2025-23266, CVE-2025-23267 (fixed in 1.17.8, NVIDIA bulletin 5659)``;
    every bulletin that applies, newest first (the newest is the one that matters most)."""
    found = advisories_for(version)
    if not found:
        return f"{upstream(version)} is at or above the security floor {FLOOR}"
    parts = [f"{a.names} (fixed in {a.fixed_in}, NVIDIA bulletin {a.bulletin})" for a in reversed(found)]
    return f"{upstream(version)} is affected by " + "; ".join(parts)
