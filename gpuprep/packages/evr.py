"""RPM version order, exactly as rpm orders it: ``rpmvercmp`` and epoch:version-release.

A port of rpm's ``rpmio/rpmvercmp.c`` (4.18) and ``rpmverCmp``: segments of ASCII digits or letters,
everything else a separator; numeric segments beat alpha ones; ``~`` sorts before anything (even the
end: ``1.0~rc1 < 1.0``), ``^`` after the end but before any further segment (``1.0 < 1.0^git1 < 1.0.1``).
A missing epoch is 0. Ordering packages compares releases always (a missing one is empty, as
``rpm.vercmp`` does); matching a dependency compares releases only when both sides have one
(rpm's ``rpmdsCompare``, libsolv's ``EVRCMP_MATCH_RELEASE``), which is why a Requires
``docker = 18.09.2ce`` matches every release of 18.09.2ce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering


def _isdigit(c: str) -> bool:
    return "0" <= c <= "9"


def _isalpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _isalnum(c: str) -> bool:
    return _isdigit(c) or _isalpha(c)


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as ``rpm.vercmp(a, b)`` prints; a faithful port, branch for branch."""
    if a == b:
        return 0
    i, j, la, lb = 0, 0, len(a), len(b)
    while i < la or j < lb:
        while i < la and not _isalnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < lb and not _isalnum(b[j]) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        # Tilde sorts before everything else, even the end of the string.
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        # Caret sorts after the end of the string but before any other segment.
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        if _isdigit(ca):
            while i < la and _isdigit(a[i]):
                i += 1
            while j < lb and _isdigit(b[j]):
                j += 1
            isnum = True
        else:
            while i < la and _isalpha(a[i]):
                i += 1
            while j < lb and _isalpha(b[j]):
                j += 1
            isnum = False
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:
            # Different segment types: numeric beats alpha.
            return 1 if isnum else -1
        if isnum:
            seg_a = seg_a.lstrip("0")
            seg_b = seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= la and j >= lb:
        return 0
    return -1 if i >= la else 1


@total_ordering
@dataclass(frozen=True)
class EVR:
    """epoch:version-release; ``epoch`` None means none was written (compares as 0), ``release`` "" likewise."""

    version: str
    release: str = ""
    epoch: int | None = None
    # Whether a release was written at all ("1.0-" has an empty one, "1.0" none): rpm orders a version
    # with a release after the same version without one, whatever the release (rpmverCmp in rpm's
    # lib/rpmver.c; "0-." > "0" and "0-~" > "0" by rpm.vercmp). None: as ``bool(release)``.
    released: bool | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> EVR:
        """``[epoch:]version[-release]`` as rpm splits it (the last ``-`` starts the release).

        >>> e = EVR.parse("2:1.17.8-1.amzn2023.0.1")
        >>> e.epoch, e.version, e.release
        (2, '1.17.8', '1.amzn2023.0.1')
        """
        text = text.strip()
        epoch: int | None = None
        m = re.match(r"^(\d+):(.*)$", text)
        if m:
            epoch, text = int(m.group(1)), m.group(2)
        version, sep, release = text.rpartition("-")
        if not sep:
            version, release = text, ""
        return cls(version, release, epoch, bool(sep))

    @property
    def has_release(self) -> bool:
        return self.released if self.released is not None else bool(self.release)

    def compare(self, other: EVR) -> int:
        """The package order, as ``rpm.vercmp("e:v-r", ...)``: epochs (missing = 0), versions, releases."""
        rc = vercmp(str(self.epoch or 0), str(other.epoch or 0))
        if rc:
            return rc
        rc = vercmp(self.version, other.version)
        if rc:
            return rc
        if self.has_release and other.has_release:
            return vercmp(self.release, other.release)
        return int(self.has_release) - int(other.has_release)

    def compare_dep(self, other: EVR) -> int:
        """The dependency order (rpmdsCompare): as ``compare``, but releases only when both have one."""
        rc = vercmp(str(self.epoch or 0), str(other.epoch or 0))
        if rc:
            return rc
        rc = vercmp(self.version, other.version)
        if rc or not (self.release and other.release):
            return rc
        return vercmp(self.release, other.release)

    def __lt__(self, other: EVR) -> bool:  # full order (both released): for sorting packages
        return self.compare(other) < 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EVR) and self.compare(other) == 0

    def __hash__(self) -> int:
        # Equal EVRs may be spelled differently ("01" == "1"): hash only what equality cannot respell.
        return hash(self.epoch or 0)

    def __str__(self) -> str:
        e = f"{self.epoch}:" if self.epoch else ""
        r = f"-{self.release}" if self.release else ""
        return f"{e}{self.version}{r}"


OPS = ("<", "<=", "=", ">=", ">")


@dataclass(frozen=True)
class Dep:
    """A Requires/Provides/Obsoletes/Conflicts entry: ``name [op evr]``."""

    name: str
    op: str = ""
    evr: EVR | None = None

    @classmethod
    def parse(cls, text: str) -> Dep:
        """``docker >= 17.06.2ce`` / ``docker-ce = 3:18.09.2`` / ``docker``; rpm's ``==`` is ``=``.

        >>> d = Dep.parse("docker-ce == 3:18.09.2")
        >>> d.name, d.op, d.evr.epoch, d.evr.version
        ('docker-ce', '=', 3, '18.09.2')
        """
        parts = text.split()
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 3:
            op = "=" if parts[1] == "==" else parts[1]
            if op in OPS:
                return cls(parts[0], op, EVR.parse(parts[2]))
        raise ValueError(f"not an RPM dependency: {text!r}")

    def matches(self, evr: EVR | None) -> bool:
        """Whether something provided as ``self.name`` at ``evr`` satisfies this dependency.

        An unversioned provide (``evr`` None) satisfies every version, as in rpm and libsolv.
        """
        if not self.op or self.evr is None or evr is None:
            return True
        rc = evr.compare_dep(self.evr)
        return {"<": rc < 0, "<=": rc <= 0, "=": rc == 0, ">=": rc >= 0, ">": rc > 0}[self.op]

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.evr}" if self.op else self.name
