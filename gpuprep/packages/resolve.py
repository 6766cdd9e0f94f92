"""Pick ecs-init, Docker and an NVIDIA runtime stack that agree: a pure function, explained.

The problem people solved by hand with ``yum search --showduplicates ecs-init nvidia-docker2``
(docs/domain.md): old nvidia-docker2 builds pin Docker exactly (``docker = 18.03.1ce``), ecs-init pins it
by range (``docker >= 17.06.2ce``, briefly ``docker = 17.03.2ce``), and the newest of each often
disagree. ``resolve`` takes every candidate the repositories offer and what is installed and
returns a ``Selection`` (with why each was chosen and why newer ones were passed over) or a
``NoSolution`` (with the closest conflicts).

Preference, in order: keep the installed Docker if any selection allows it; the newest ecs-init;
the newest runtime package; the newest Docker. ``docker`` (``--docker VERSION``) forces a version.

Speed: candidates of each role get bit positions in ascending version order, and each distinct
requirement is turned once into a bit mask of the packages that satisfy it, so narrowing Docker to
what ecs-init and the runtime accept is an AND of integers and "the newest left" is the highest bit.
Only combinations that pass the masks get the full check (every Requires, Obsoletes, Conflicts).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gpuprep.packages import security
from gpuprep.packages.evr import EVR, Dep

ECS_INIT = "ecs-init"
# Amazon Linux and RHEL ship "docker"; Docker's own CentOS repository "docker-ce" (epoch 3).
DOCKER_NAMES = ("docker", "docker-ce")
LEGACY = ("nvidia-docker2", "nvidia-container-runtime")
# nvidia-container-toolkit-base exists from toolkit 1.11; these four are always one version.
TOOLKIT = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1")
STACKS = {"legacy": LEGACY, "toolkit": TOOLKIT}
RUNTIME_NAMES = LEGACY + TOOLKIT
QUERY_NAMES = (ECS_INIT, *DOCKER_NAMES, *LEGACY, *TOOLKIT)
# Both stacks put the runtime Docker is told about here (the toolkit RPM provides the legacy name).
RUNTIME_PATH = "/usr/bin/nvidia-container-runtime"


@dataclass(frozen=True)
class Package:
    name: str
    evr: EVR
    arch: str = "noarch"
    requires: tuple[Dep, ...] = ()
    provides: tuple[Dep, ...] = ()
    obsoletes: tuple[Dep, ...] = ()
    conflicts: tuple[Dep, ...] = ()
    repo: str = ""

    @property
    def nevr(self) -> str:
        """``name-[epoch:]version-release``: what docs/contract.md's ``selection`` carries."""
        return f"{self.name}-{self.evr}"

    @property
    def nevra(self) -> str:
        """What the package manager installs exactly (``dnf install docker-20.10.25-1.amzn2023.x86_64``)."""
        e = f"{self.evr.epoch}:" if self.evr.epoch else ""
        return f"{self.name}-{e}{self.evr.version}-{self.evr.release}.{self.arch}"

    def provided(self) -> Iterator[tuple[str, EVR | None]]:
        yield self.name, self.evr
        for p in self.provides:
            yield p.name, p.evr if p.op == "=" else None


@dataclass
class Selection:
    stack: str
    packages: dict[str, Package]  # name -> chosen, in role order
    why: dict[str, str]
    passed_over: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    installed: dict[str, Package] = field(default_factory=dict)
    # Toolkit packages of the selection below the security floor (only with allow_vulnerable), and installed
    # ones the selection replaces because they are: "name-evr: CVE-..." each.
    vulnerable: list[str] = field(default_factory=list)
    replaced_vulnerable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, str]:
        return {name: p.nevr for name, p in self.packages.items()}

    @property
    def to_install(self) -> list[Package]:
        """The chosen packages not installed at exactly that version."""
        have = self.installed
        return [p for n, p in self.packages.items() if not (n in have and _exact(have[n].evr, p.evr))]

    @property
    def docker(self) -> Package:
        return next(p for n, p in self.packages.items() if n in DOCKER_NAMES)

    def table(self) -> list[str]:
        rows = [(name, p.nevr, self.why.get(name, "")) for name, p in self.packages.items()]
        w1 = max(len(r[0]) for r in rows)
        w2 = max(len(r[1]) for r in rows)
        lines = [f"{'package':<{w1}}  {'selected':<{w2}}  why"]
        lines += [f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows]
        lines += [f"passed over: {line}" for line in self.passed_over]
        lines += [f"note: {line}" for line in self.notes]
        return lines


@dataclass
class NoSolution:
    stack: str
    message: str
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cves: list[str] = field(default_factory=list)  # set when only toolkits below the security floor would agree

    def table(self) -> list[str]:
        return [f"conflict: {c}" for c in self.conflicts] + [f"note: {n}" for n in self.notes]


def _cmp(a: Package, b: Package) -> int:
    return a.evr.compare(b.evr)


def _exact(a: EVR, b: EVR) -> bool:
    """The same build: equal in rpm's order and the same release text (``1.amzn2`` orders equal to ``1_amzn2``)."""
    return a == b and a.release == b.release


class Universe:
    """Candidates and installed packages, indexed: bit i is ``packages[i]``; roles ascend in version."""

    def __init__(self, candidates: Iterable[Package], installed: Iterable[Package],
                 withheld: Iterable[Package] = ()) -> None:
        installed = list(installed)
        # What packages left out of the universe (below the security floor) provide: a requirement on one of
        # these names is still gpuprep's to decide, and unmet, so dnf never pulls one in behind the selection.
        self.withheld = {n for p in withheld for n, _ in p.provided()}
        self.installed_by_name: dict[str, Package] = {}
        for p in installed:
            prev = self.installed_by_name.get(p.name)
            if prev is None or _cmp(p, prev) > 0:
                self.installed_by_name[p.name] = p
        seen: dict[tuple[str, str], Package] = {}
        for p in [*installed, *candidates]:
            key = (p.name, f"{p.evr}")
            # One per name and EVR: the installed one first, then a native arch over i686 (multilib).
            if key not in seen or (seen[key].arch in ("i686", "i386") and p.arch not in ("i686", "i386")
                                   and seen[key].repo != "@System"):
                seen[key] = p
        by_name: dict[str, list[Package]] = {}
        for p in seen.values():
            by_name.setdefault(p.name, []).append(p)
        self.packages: list[Package] = []
        self.by_name: dict[str, list[int]] = {}  # ascending version
        for name in sorted(by_name):
            start = len(self.packages)
            self.packages += sorted(by_name[name], key=functools.cmp_to_key(_cmp))
            self.by_name[name] = list(range(start, len(self.packages)))
        self.providers: dict[str, list[tuple[int, EVR | None]]] = {}
        for i, p in enumerate(self.packages):
            for name, evr in p.provided():
                self.providers.setdefault(name, []).append((i, evr))
        self._masks: dict[Dep, int] = {}
        self.installed_index = {n: self.index_of(p) for n, p in self.installed_by_name.items()}

    def index_of(self, p: Package) -> int:
        for i in self.by_name.get(p.name, []):
            if _exact(self.packages[i].evr, p.evr):
                return i
        raise KeyError(p.nevr)

    def mask(self, dep: Dep) -> int:
        """Bit mask of the packages whose provides satisfy ``dep``."""
        m = self._masks.get(dep)
        if m is None:
            m = 0
            for i, evr in self.providers.get(dep.name, ()):
                if dep.matches(evr):
                    m |= 1 << i
            self._masks[dep] = m
        return m

    def role_mask(self, names: Iterable[str]) -> int:
        m = 0
        for n in names:
            for i in self.by_name.get(n, ()):
                m |= 1 << i
        return m

    def relevant(self, dep: Dep) -> bool:
        """A requirement gpuprep decides (something in the universe provides it); the rest is dnf's."""
        return dep.name in self.providers or dep.name in self.withheld

    def newest_first(self, names: Iterable[str]) -> list[int]:
        idx = [i for n in names for i in self.by_name.get(n, ())]
        newer: Callable[[int, int], int] = lambda a, b: _cmp(self.packages[b], self.packages[a])
        return sorted(idx, key=functools.cmp_to_key(newer))


def _bits_high_first(m: int) -> Iterator[int]:
    while m:
        b = m.bit_length() - 1
        yield b
        m ^= 1 << b


class _Solver:
    def __init__(self, u: Universe, stack: str, docker: str | None) -> None:
        self.u = u
        self.stack = stack
        self.slots = STACKS[stack]
        self.docker_mask = u.role_mask(DOCKER_NAMES)
        self.forced = Dep("docker", "=", EVR.parse(docker)) if docker else None
        self._restrict: dict[tuple[int, int], int] = {}

    def restrict(self, i: int, role: int) -> int:
        """The packages of ``role`` (a mask) that ``packages[i]``'s Requires leave possible."""
        key = (i, role)
        r = self._restrict.get(key)
        if r is None:
            r = role
            for dep in self.u.packages[i].requires:
                providers = self.u.mask(dep) | self._provider_names_mask(dep)
                # Only a requirement that nothing outside the role could satisfy narrows the role.
                if providers and providers & ~role == 0:
                    r &= self.u.mask(dep)
            self._restrict[key] = r
        return r

    def _provider_names_mask(self, dep: Dep) -> int:
        m = 0
        for i, _ in self.u.providers.get(dep.name, ()):
            m |= 1 << i
        return m

    # -- the full check of one set ----------------------------------------------------------
    def final_set(self, chosen: list[int]) -> list[int]:
        """The chosen packages plus what stays installed (not replaced by name, not obsoleted)."""
        names = {self.u.packages[i].name for i in chosen}
        kept = []
        for name, i in self.u.installed_index.items():
            if name in names:
                continue
            p = self.u.packages[i]
            if any(o.name == p.name and o.matches(p.evr) for c in chosen for o in self.u.packages[c].obsoletes):
                continue
            kept.append(i)
        return chosen + kept

    def conflict(self, chosen: list[int]) -> str | None:
        """Why this set cannot be installed together, or None when it can."""
        u = self.u
        final = self.final_set(chosen)
        fmask = 0
        for i in final:
            fmask |= 1 << i
        for i in final:
            p = u.packages[i]
            for dep in p.requires:
                if u.relevant(dep) and not (u.mask(dep) & fmask):
                    return self._unmet(p, dep, final)
            for dep in p.conflicts:
                hit = u.mask(dep) & fmask & ~(1 << i)
                if hit:
                    return f"{p.nevr} conflicts with {u.packages[hit.bit_length() - 1].nevr} ({dep})"
        for i in chosen:
            p = u.packages[i]
            for dep in p.obsoletes:
                for j in chosen:
                    q = u.packages[j]
                    if j != i and q.name == dep.name and dep.matches(q.evr):
                        return f"{p.nevr} obsoletes {q.nevr} ({dep})"
        return None

    def _unmet(self, p: Package, dep: Dep, final: list[int]) -> str:
        """``p needs dep; <who in the set holds that name> ...`` in the issue's words."""
        for i in final:
            q = self.u.packages[i]
            if any(n == dep.name for n, _ in q.provided()) and q is not p:
                return f"{p.nevr} needs {dep}; {q.nevr} is in the set"
        if dep.name in self.u.withheld and dep.name not in self.u.providers:
            return f"{p.nevr} needs {dep}; only versions below the security floor {security.floor()} provide it"
        return f"{p.nevr} needs {dep}; nothing offered provides it"

    def with_helpers(self, chosen: list[int]) -> tuple[list[int], str | None]:
        """Add, newest first, offered packages that unmet Requires name (nvidia-container-runtime 3.x
        needs nvidia-container-toolkit, which needs libnvidia-container-tools): what dnf would pull in."""
        chosen = list(chosen)
        for _ in range(6):
            why = self.conflict(chosen)
            if why is None:
                return chosen, None
            added = False
            names = {self.u.packages[i].name for i in chosen}
            fmask = sum(1 << i for i in self.final_set(chosen))
            for i in list(chosen):
                for dep in self.u.packages[i].requires:
                    if self.u.relevant(dep) and not self.u.mask(dep) & fmask:
                        options = [j for j in _bits_high_first(self.u.mask(dep))
                                   if self.u.packages[j].name not in names
                                   and self.u.packages[j].name not in DOCKER_NAMES + (ECS_INIT,)]
                        if options:
                            chosen.append(options[0])
                            added = True
                            break
                if added:
                    break
            if not added:
                return chosen, why
        return chosen, self.conflict(chosen)

    # -- the search ---------------------------------------------------------------------------
    def stack_combos(self, dmask: int) -> Iterator[tuple[list[int], int]]:
        """Runtime stacks newest first, each with the Docker mask it leaves."""
        u = self.u
        main, *companions = self.slots
        for m in u.newest_first([main]):
            d1 = dmask & self.restrict(m, self.docker_mask)
            if not d1:
                continue
            if self.stack == "legacy":
                runtime_role = u.role_mask([companions[0]])
                allowed = self.restrict(m, runtime_role)
                for r in _bits_high_first(allowed):
                    d2 = d1 & self.restrict(r, self.docker_mask)
                    if d2:
                        yield [m, r], d2
            else:
                version = u.packages[m].evr
                options = []
                for name in companions:
                    role = u.role_mask([name])
                    same = [j for j in _bits_high_first(self.restrict(m, role))
                            if u.packages[j].evr.version == version.version
                            and (u.packages[j].evr.epoch or 0) == (version.epoch or 0)]
                    if same:
                        options.append(same)
                    elif u.by_name.get(name) and any(
                            u.packages[j].evr.version == version.version for j in u.by_name[name]):
                        options.append([])  # offered at this version but excluded: no combination
                for combo in itertools.product(*options):
                    d2 = d1
                    for j in combo:
                        d2 &= self.restrict(j, self.docker_mask)
                    if d2:
                        yield [m, *combo], d2

    def search(self, pool: int) -> list[int] | None:
        u = self.u
        for e in u.newest_first([ECS_INIT]):
            dmask = pool & self.restrict(e, self.docker_mask)
            if not dmask:
                continue
            for stack, d in self.stack_combos(dmask):
                for di in _bits_high_first(d):
                    chosen, why = self.with_helpers([e, di, *stack])
                    if why is None:
                        return chosen
        return None


def _same_version(s: _Solver) -> int:
    """Docker packages whose version (and release, when given) is ``--docker``'s, any epoch: a user asks for
    ``--docker 24.0.7``, not ``3:24.0.7`` (Docker's CentOS packages carry epoch 3, RHEL's docker epoch 2)."""
    f = s.forced.evr if s.forced is not None else None
    if f is None or f.epoch is not None:
        return 0
    m = 0
    for i in _bits_high_first(s.docker_mask):
        p = s.u.packages[i]
        if Dep(p.name, "=", f).matches(EVR(p.evr.version, p.evr.release, None)):
            m |= 1 << i
    return m


def _pool(s: _Solver, keep_installed: bool) -> int:
    u = s.u
    pool = s.docker_mask
    if s.forced is not None:
        pool &= u.mask(s.forced) | u.mask(Dep("docker-ce", s.forced.op, s.forced.evr)) | _same_version(s)
    if keep_installed:
        kept = 0
        for n in DOCKER_NAMES:
            if n in u.installed_index:
                kept |= 1 << u.installed_index[n]
        pool &= kept
    return pool


def resolve(candidates: Sequence[Package], installed: Sequence[Package], *, stack: str = "auto",
            docker: str | None = None, allow_vulnerable: bool = False) -> Selection | NoSolution:
    """The best agreeing set of ecs-init, Docker and runtime packages, or why there is none.

    Toolkit packages below the security floor (``gpuprep.packages.security``) are not candidates, and an
    installed one is not kept, unless ``allow_vulnerable``: a repository offering only those gives a
    NoSolution naming the CVEs."""
    if allow_vulnerable:
        result = _resolve(candidates, installed, stack, docker)
        if isinstance(result, Selection):
            result.vulnerable = _vulnerable(result.packages.values())
            result.notes += [f"{v} (selected: --allow-vulnerable)" for v in result.vulnerable]
        return result
    safe = [p for p in candidates if not _is_vulnerable(p)]
    kept = [p for p in installed if not _is_vulnerable(p)]
    withheld = [p for p in [*candidates, *installed] if _is_vulnerable(p)]
    result = _resolve(safe, kept, stack, docker, withheld)
    if isinstance(result, Selection):
        replaced = _vulnerable(p for p in installed if _is_vulnerable(p))
        result.replaced_vulnerable = replaced
        result.notes += [f"installed {v}: replaced" for v in replaced]
        return result
    if len(safe) < len(candidates) or len(kept) < len(installed):
        anyway = _resolve(candidates, installed, stack, docker)
        if isinstance(anyway, Selection):
            found = [p for p in anyway.packages.values() if _is_vulnerable(p)]
            advisories = security.advisories_for(found[0].evr.version) if found else []
            return NoSolution(
                anyway.stack,
                f"every {found[0].name if found else 'toolkit'} that agrees is below the security floor "
                f"{security.floor()}: {found[0].nevr if found else '?'} is affected by "
                f"{security.describe(found[0].evr.version).split(' is affected by ', 1)[-1] if found else '?'}",
                [f"{v}" for v in _vulnerable(found)], result.notes, security.cve_list(advisories))
    return result


def _is_vulnerable(p: Package) -> bool:
    return security.vulnerable(p.name, p.evr.version)


def _vulnerable(pkgs: Iterable[Package]) -> list[str]:
    """``name-evr: CVE-..., CVE-... (fixed in X)`` for each toolkit package below the floor."""
    out = []
    for p in pkgs:
        found = security.advisories_for(p.evr.version) if _is_vulnerable(p) else []
        if found:
            out.append(f"{p.nevr} is below the security floor {security.floor()}: "
                       f"{', '.join(security.cve_list(found))} (NVIDIA bulletins "
                       f"{', '.join(str(a.bulletin) for a in found)})")
    return out


def _resolve(candidates: Sequence[Package], installed: Sequence[Package], stack: str,
             docker: str | None, withheld: Sequence[Package] = ()) -> Selection | NoSolution:
    u = Universe(candidates, installed, withheld)
    notes: list[str] = []
    if stack == "auto":
        order = _auto_order(u)
    else:
        order = [stack]
    first_failure: NoSolution | None = None
    for st in order:
        result = _resolve_stack(u, st, docker)
        if isinstance(result, Selection):
            result.notes = notes + result.notes
            return result
        first_failure = first_failure or result
        if len(order) > 1:
            notes.append(f"{st} stack: {result.message}")
    assert first_failure is not None
    first_failure.notes = notes + first_failure.notes
    return first_failure


def _auto_order(u: Universe) -> list[str]:
    """``auto``: the stack already installed; else toolkit when offered (NVIDIA publishes nothing
    else since toolkit 1.15), falling back to legacy when only that agrees."""
    if "nvidia-container-toolkit" in u.installed_by_name and "nvidia-docker2" not in u.installed_by_name:
        return ["toolkit", "legacy"]
    if "nvidia-docker2" in u.installed_by_name:
        return ["legacy", "toolkit"]
    return ["toolkit", "legacy"] if u.by_name.get("nvidia-container-toolkit") else ["legacy"]


def _resolve_stack(u: Universe, stack: str, docker: str | None) -> Selection | NoSolution:
    s = _Solver(u, stack, docker)
    missing = [n for n in (ECS_INIT, s.slots[0]) if not u.by_name.get(n)]
    if not (s.docker_mask):
        missing.append("docker")
    if stack == "legacy" and not u.by_name.get(LEGACY[1]):
        missing.append(LEGACY[1])
    if missing:
        return NoSolution(stack, f"not offered by the enabled repositories: {', '.join(missing)}")
    if docker and not _pool(s, False):
        offered = ", ".join(u.packages[i].nevr for i in _bits_high_first(s.docker_mask))
        return NoSolution(stack, f"--docker {docker}: no such Docker offered (offered: {offered})")
    has_installed_docker = any(n in u.installed_index for n in DOCKER_NAMES)
    for keep in ([True, False] if has_installed_docker else [False]):
        pool = _pool(s, keep)
        if not pool:
            continue
        chosen = s.search(pool)
        if chosen is not None:
            return _explain(s, chosen, pool, keep)
    return NoSolution(stack, f"no {ECS_INIT}, Docker and {stack} runtime packages agree", _closest_conflicts(s))


# -- explanations ------------------------------------------------------------------------------
def _docker_deps(p: Package) -> str:
    deps = [str(d) for d in p.requires if d.name in DOCKER_NAMES]
    return ", ".join(deps) if deps else "any docker"


def _why_not(s: _Solver, i: int, chosen: list[int], pool: int, keep: bool) -> str:
    """Why candidate ``i`` could not take its place in ``chosen``: the requirement that excluded it."""
    u = s.u
    p = u.packages[i]
    mine = s.restrict(i, s.docker_mask) & s.docker_mask
    if not mine & pool:
        if keep:
            d = u.packages[next(_bits_high_first(pool))]
            return f"{p.nevr} needs {_docker_deps(p)}; the installed {d.nevr} is kept (--docker VERSION to change it)"
        if s.forced is not None:
            return f"{p.nevr} needs {_docker_deps(p)}; --docker {s.forced.evr} was asked for"
        return f"{p.nevr} needs {_docker_deps(p)}; no Docker offered matches"
    others = [j for j in chosen if u.packages[j].name != p.name and u.packages[j].name not in DOCKER_NAMES]
    for j in others:
        if not (mine & s.restrict(j, s.docker_mask) & pool):
            return f"{p.nevr} needs {_docker_deps(p)}; {u.packages[j].nevr} requires {_docker_deps(u.packages[j])}"
    swapped = [i if u.packages[j].name == p.name else j for j in chosen]
    for docker in _bits_high_first(mine & pool):
        trial = [docker if u.packages[j].name in DOCKER_NAMES else j for j in swapped]
        _, why = s.with_helpers(trial)
        if why:
            return why
    return f"{p.nevr} does not agree with the rest of the selection"


def _explain(s: _Solver, chosen: list[int], pool: int, keep: bool) -> Selection:
    u = s.u
    pkgs = {u.packages[i].name: u.packages[i] for i in chosen}
    order = [ECS_INIT, *DOCKER_NAMES, *s.slots]
    ordered = {n: pkgs[n] for n in order if n in pkgs}
    ordered.update({n: p for n, p in pkgs.items() if n not in ordered})
    why: dict[str, str] = {}
    passed: list[str] = []
    ecs = pkgs[ECS_INIT]
    docker = next(p for n, p in ordered.items() if n in DOCKER_NAMES)
    for name, p in ordered.items():
        newer = [j for j in u.by_name.get(name, []) if u.packages[j].evr.compare(p.evr) > 0]
        newer.reverse()
        if name in DOCKER_NAMES:
            if keep:
                why[name] = "installed, kept: every other choice accepts it"
            elif s.forced is not None:
                why[name] = f"--docker {s.forced.evr}"
            else:
                why[name] = f"newest Docker that {ecs.name} and {s.slots[0]} accept"
            newer = [] if keep or s.forced else newer
        elif name == ECS_INIT:
            why[name] = "newest" if not newer else f"newest that agrees ({len(newer)} newer passed over)"
        elif name == s.slots[0]:
            why[name] = f"newest runtime that agrees ({len(newer)} newer passed over)" if newer else "newest runtime"
        elif name in s.slots:
            why[name] = f"same version as {s.slots[0]}"
        else:
            needed_by = [q.nevr for q in pkgs.values() if any(d.name == name or any(
                pn == d.name for pn, _ in p.provided()) for d in q.requires)]
            why[name] = f"required by {', '.join(needed_by) or 'the selection'}"
            newer = []
        if name in u.installed_by_name and _exact(u.installed_by_name[name].evr, p.evr):
            why[name] += " (installed)"
        if name in s.slots[1:]:
            continue
        for j in newer[:3]:
            passed.append(_why_not(s, j, chosen, pool, keep))
        if len(newer) > 3:
            passed.append(f"... and {len(newer) - 3} older {name} candidates newer than {p.nevr}")
    sel = Selection(s.stack, ordered, why, passed, installed=dict(u.installed_by_name))
    if keep and (s.docker_mask & ~pool):
        newest = u.packages[next(_bits_high_first(s.docker_mask))]
        if newest.evr.compare(docker.evr) > 0:
            sel.notes.append(f"newer Docker {newest.nevr} offered; the installed {docker.nevr} is kept "
                             "(pass --docker VERSION to move)")
    return sel


def _closest_conflicts(s: _Solver, limit: int = 6) -> list[str]:
    """Why the newest ecs-init and runtime candidates do not agree, newest pairs first."""
    u = s.u
    out: list[str] = []
    pool = _pool(s, False)
    for e in u.newest_first([ECS_INIT])[:3]:
        emask = s.restrict(e, s.docker_mask) & pool
        if not emask:
            out.append(f"{u.packages[e].nevr} requires {_docker_deps(u.packages[e])}; no Docker offered matches")
            continue
        for m in u.newest_first([s.slots[0]])[:3]:
            mm = s.restrict(m, s.docker_mask)
            pe, pm = u.packages[e], u.packages[m]
            if not emask & mm:
                out.append(f"{pm.nevr} needs {_docker_deps(pm)}; {pe.nevr} requires {_docker_deps(pe)}")
                continue
            d = next(_bits_high_first(emask & mm))
            _, why = s.with_helpers([e, d, m])
            out.append(why or f"{pm.nevr} and {pe.nevr} agree on {u.packages[d].nevr}, "
                              f"but no {s.stack} companion packages fit")
    return list(dict.fromkeys(out))[:limit]  # first occurrences, in order
