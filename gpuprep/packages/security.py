"""A package's security floor from NVIDIA's bulletins: the NVIDIA Container Toolkit's by default, read from the
knowledge table ``toolkit-security`` (gpuprep/knowledge/data/toolkit-security.json, or a newer one in
/etc/gpuprep/knowledge.d); DCGM's from its own table (``gpu/security.py``). In packages/, the room of package versions,
because the resolver never selects a package below its floor: the toolkit's room and the GPU's read it here.

Each row is a bulletin and the first toolkit version NVIDIA names as fixed; every version below it is affected.
The floor is the highest fixed version: install never selects a toolkit below it without ``--allow-vulnerable``.
The toolkit's packages (the table's ``packages``) always ship at one version, so the floor applies to each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from gpuprep import knowledge
from gpuprep.packages.evr import vercmp

BULLETIN = "https://nvidia.custhelp.com/app/answers/detail/a_id/{}"
TABLE = "toolkit-security"


@dataclass(frozen=True)
class Advisory:
    cves: tuple[str, ...]
    fixed_in: str  # the first version NVIDIA names as fixed
    bulletin: int  # nvidia.custhelp.com answer id
    mitigation: str = ""
    affected_from: str = ""  # the first affected version; "" for every version below fixed_in

    @property
    def url(self) -> str:
        return BULLETIN.format(self.bulletin)

    @property
    def names(self) -> str:
        """``CVE-2024-0135, CVE-2024-0136, CVE-2024-0137``, or the bulletin when the table names no CVE."""
        return ", ".join(self.cves) or f"NVIDIA bulletin {self.bulletin}"

    def affects(self, version: str) -> bool:
        return vercmp(version, self.fixed_in) < 0 and (
            not self.affected_from or vercmp(version, self.affected_from) >= 0)

    def as_dict(self) -> dict[str, Any]:
        return {"cves": list(self.cves), "fixed_in": self.fixed_in, "bulletin": self.url,
                **({"mitigation": self.mitigation} if self.mitigation else {})}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Advisory:
        return cls(tuple(row["cves"]), row["fixed_in"], row["bulletin"], row.get("mitigation", ""),
                   row.get("affected_from", ""))


def advisories(table: str = TABLE) -> list[Advisory]:
    """The table's bulletins in the order of their fixed versions (oldest first)."""
    rows = [Advisory.from_row(r) for r in knowledge.table(table).rows]

    def older(a: Advisory, b: Advisory) -> int:
        return vercmp(a.fixed_in, b.fixed_in)

    return sorted(rows, key=functools.cmp_to_key(older))


def floor(table: str = TABLE) -> str:
    return advisories(table)[-1].fixed_in


def packages(table: str = TABLE) -> tuple[str, ...]:
    return tuple(knowledge.table(table).doc["packages"])


def upstream(version: str) -> str:
    """The toolkit's own version in a package version: ``1.17.0~rc.1`` stays (rpm orders ``~`` first), a
    Debian revision or an epoch goes (``1:1.17.7-1`` -> ``1.17.7``)."""
    version = version.split(":", 1)[-1]
    return version.split("-", 1)[0]


def advisories_for(version: str, table: str = TABLE) -> list[Advisory]:
    """The bulletins whose fix ``version`` predates (oldest first); [] at or above the floor."""
    v = upstream(version)
    return [a for a in advisories(table) if a.affects(v)]


def vulnerable(name: str, version: str) -> bool:
    """A toolkit package (by name) at a version below the floor."""
    return name in packages() and bool(advisories_for(version))


def cve_list(found: list[Advisory]) -> list[str]:
    return [c for a in found for c in a.cves]


def describe(version: str, table: str = TABLE) -> str:
    """``1.17.7 is affected by CVE-2025-23266, CVE-2025-23267 (fixed in 1.17.8, NVIDIA bulletin 5659)``;
    every bulletin that applies, newest first (the newest is the one that matters most)."""
    found = advisories_for(version, table)
    if not found:
        return f"{upstream(version)} is at or above the security floor {floor(table)}"
    parts = [f"{', '.join(a.cves)} (fixed in {a.fixed_in}, NVIDIA bulletin {a.bulletin})" if a.cves else
             f"NVIDIA bulletin {a.bulletin} (fixed in {a.fixed_in})" for a in reversed(found)]
    return f"{upstream(version)} is affected by " + "; ".join(parts)
