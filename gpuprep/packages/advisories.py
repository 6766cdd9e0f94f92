"""The distribution's own security advisories for the stack's packages (Docker, containerd, runc, the NVIDIA
container toolkit, the driver, the kernel): what dnf's updateinfo (Amazon Linux's ALAS, RHEL's RHSA) says is pending,
read from the metadata the host's dnf already cached. doctor never refreshes metadata: that would be a network
call and a write on every run.

Read-only to the letter: dnf writes (logs, its history database, solv caches, ``expired_repos.json``) under
``--installroot`` whatever ``logdir``/``cachedir`` say (seen with dnf 4.14 here), so the query runs in a scratch
installroot outside the target holding copies of the target's rpm database and of the cached ``repomd.xml``,
``primary`` and ``updateinfo`` files (bounded in size), with the target's own repository files (``reposdir``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from gpuprep import fixes
from gpuprep.errors import GpuprepError
from gpuprep.host import Host
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

CACHE = "/var/cache/dnf"
# The stack's packages as dnf package specs (globs: the driver's packages are named by NVIDIA's and the distro's
# packaging, kmod-nvidia-latest-dkms, nvidia-driver-cuda, ...).
STACK = ("docker", "containerd", "runc", "nvidia-container-toolkit*", "libnvidia-container*", "nvidia-driver*",
         "kmod-nvidia*", "kernel*", "datacenter-gpu-manager*")
MAX_COPY_BYTES = 512 << 20  # the rpm database and the metadata copied; AL2023's are some tens of MiB
QUERY_TIMEOUT = 60.0
# repomd.xml's <data type="..."> whose files the query needs: dnf -C refuses a repository whose cache lacks
# filelists ("Cache-only enabled but no cache for ..."), seen with dnf 4.14.
NEEDED = ("primary", "filelists", "updateinfo")
UNUSABLE = ("Cache-only enabled but no cache", "Ignoring repositories")
_DATA = re.compile(r'<data type="(?P<type>[^"]+)">.*?<location href="(?P<href>[^"]+)"', re.DOTALL)
_LIST_LINE = re.compile(r"^(?P<id>\S+)\s+(?P<severity>[^\s/]+)/Sec\.\s+(?P<nevra>\S+)$")


@dataclass
class Advisory:
    id: str
    severity: str
    packages: list[str] = field(default_factory=list)  # the NEVRAs that fix it
    cves: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "packages": self.packages, "cves": self.cves}


@dataclass
class Pending:
    advisories: list[Advisory]
    repos: list[str]  # the cached repositories with updateinfo
    cached: str  # the newest cached repomd.xml's time, ISO 8601


def cached_repos(host: Host) -> dict[str, dict[str, str]]:
    """``{cache dir name: {type: href}}`` for each cached repository whose repomd.xml lists updateinfo."""
    out = {}
    try:
        names = sorted(os.listdir(host.path(CACHE)))
    except OSError:
        return {}
    for name in names:
        try:
            raw = host.read_bytes(f"{CACHE}/{name}/repodata/repomd.xml", limit=1 << 20)
        except (OSError, GpuprepError):
            continue
        if raw is None:
            continue
        text = raw.decode("utf-8", errors="replace")
        files = {m.group("type"): m.group("href") for m in _DATA.finditer(text)}
        if all(t in files for t in NEEDED):
            out[name] = files
    return out


def _copy(src: str, dst: str, budget: list[int]) -> bool:
    size = os.path.getsize(src)
    if size > budget[0]:
        return False
    budget[0] -= size
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def stage(p: Probes, repos: dict[str, dict[str, str]]) -> str:
    """A scratch installroot with the target's rpm database and the cached metadata; NotApplicable when too big."""
    from gpuprep.packages.rpmdb import DB_FILES, db_args

    args = db_args(p.host)
    if args is None:
        raise NotApplicable("no rpm database: nothing is installed to have advisories")
    dbpath = args[args.index("--dbpath") + 1] if args else p.host.run(
        ["rpm", "--eval", "%{_dbpath}"], timeout=30, check=False).stdout.strip()
    inst = os.path.join(p.host.scratch(), "advisories")
    budget = [MAX_COPY_BYTES]
    cache = str(p.host.path(CACHE))
    db = str(p.host.path(dbpath))
    files = [(os.path.join(db, f), f"{inst}{dbpath}/{f}") for f in os.listdir(db)
             if f.startswith(DB_FILES) and os.path.isfile(os.path.join(db, f))]
    for name, data in repos.items():
        base = os.path.join(cache, name)
        for href in ["repodata/repomd.xml", *(data[t] for t in NEEDED)]:
            files.append((os.path.join(base, href), f"{inst}{CACHE}/{name}/{href}"))
        repo_id = name.rsplit("-", 1)[0]
        for solv in (f"{repo_id}.solv", f"{repo_id}-filenames.solvx", f"{repo_id}-updateinfo.solvx"):
            if os.path.isfile(os.path.join(cache, solv)):  # dnf's parsed form: saves parsing the XML again
                files.append((os.path.join(cache, solv), f"{inst}{CACHE}/{solv}"))
    for src, dst in files:
        if not _copy(src, dst, budget):
            raise NotApplicable(f"the rpm database and dnf's cached metadata exceed {MAX_COPY_BYTES >> 20} MiB: "
                                "not copied to read them")
    return inst


def in_stack(nevra: str) -> bool:
    """dnf's updateinfo list names advisories of other packages too, whatever specs it is given (dnf 4.14)."""
    name = nevra.rsplit("-", 2)[0]
    return any(fnmatch.fnmatchcase(name, spec) for spec in STACK)


def parse_list(text: str) -> dict[str, Advisory]:
    """``dnf updateinfo list --security``: ``ALAS2023-2026-1234 Important/Sec. docker-25.0.8-1.amzn2023.x86_64``;
    only the stack's packages.

    >>> found = parse_list('''Last metadata expiration check: 0:04:12 ago on Tue Dec  8 00:10:02 2026.
    ... ALAS2023-2025-1002 Important/Sec. docker-25.0.8-1.amzn2023.0.5.x86_64
    ... ALAS2023-2025-1002 Important/Sec. runc-1.2.6-1.amzn2023.0.1.x86_64
    ... ALAS2023-2025-1017 Medium/Sec.    openssl-libs-1:3.2.2-1.amzn2023.0.2.x86_64''')
    >>> [(a.id, a.severity, a.packages) for a in found.values()]
    [('ALAS2023-2025-1002', 'Important', ['docker-25.0.8-1.amzn2023.0.5.x86_64', 'runc-1.2.6-1.amzn2023.0.1.x86_64'])]
    """
    found: dict[str, Advisory] = {}
    for line in text.splitlines():
        m = _LIST_LINE.match(line.strip())
        if m and in_stack(m.group("nevra")):
            found.setdefault(m.group("id"), Advisory(m.group("id"), m.group("severity"))).packages.append(
                m.group("nevra"))
    return found


def parse_info_cves(text: str) -> dict[str, list[str]]:
    """``dnf updateinfo info``: each block's ``Update ID`` and the CVE ids of its ``CVEs`` field.

    >>> parse_info_cves('''===============================================================================
    ...   Important: docker
    ... ===============================================================================
    ...   Update ID: ALAS2023-2025-1002
    ...        Type: security
    ...        CVEs: CVE-2025-54388
    ...            : CVE-2025-54410
    ...    Severity: Important''')
    {'ALAS2023-2025-1002': ['CVE-2025-54388', 'CVE-2025-54410']}
    """
    out: dict[str, list[str]] = {}
    current = None
    in_cves = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Update ID":
            current, in_cves = value.strip(), False
            continue
        if sep and key.strip():
            in_cves = key.strip() == "CVEs"
        if current and in_cves:
            out.setdefault(current, []).extend(re.findall(r"CVE-\d{4}-\d+", line))
    return out


@probe
def pending(p: Probes) -> Pending:
    import datetime as dt

    from gpuprep.errors import CommandError

    if p.platform.package_format != "rpm":
        raise NotApplicable(f"{p.platform.name or 'this system'} has no dnf updateinfo")
    if p.platform.package_manager != "dnf":
        raise NotApplicable(f"{p.platform.name}: {p.platform.package_manager} 3's updateinfo is not read (dnf only)")
    dnf = p.host.which("dnf") if p.host.live else p.host.tool("dnf")
    if dnf is None:
        raise NotApplicable("dnf is not installed")
    cache = str(p.host.path(CACHE))
    repos = cached_repos(p.host)
    if not repos:
        raise NotApplicable(f"no cached repository metadata with updateinfo in {CACHE} (doctor never refreshes it: "
                            "`dnf makecache` does)")
    inst = stage(p, repos)
    root = str(p.host.root).rstrip("/")
    # -C: the cache only, never the network; versionlock off: a locked package's advisory is still pending.
    base = [dnf, "-q", "--setopt=errorlevel=3", "-C", "--disableplugin=local", "--disableplugin=versionlock",
            f"--installroot={inst}", f"--setopt=reposdir={root}/etc/yum.repos.d",
            f"--setopt=varsdir={root}/etc/dnf/vars,{root}/etc/yum/vars"]
    if p.platform.version_id:
        base.append(f"--releasever={p.platform.version_id}")
    found: dict[str, Advisory] = {}
    cves: dict[str, list[str]] = {}
    for sub in (["list"], ["info"]):
        try:
            done = p.host.run([*base, "updateinfo", *sub, "--security", "--updates", *STACK], timeout=QUERY_TIMEOUT,
                              check=True)
        except CommandError as exc:
            raise NotApplicable(f"dnf could not read the cached updateinfo: {exc.message}") from None
        unusable = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith(UNUSABLE)
                    or any(u in line for u in UNUSABLE)]
        if unusable:
            raise NotApplicable(f"dnf could not use the cached metadata ({unusable[0]}): `dnf makecache` refreshes it")
        if sub == ["list"]:
            found = parse_list(done.stdout)
        else:
            cves = parse_info_cves(done.stdout)
    for a in found.values():
        a.cves = cves.get(a.id, [])
    newest = max(os.path.getmtime(os.path.join(cache, n, "repodata", "repomd.xml")) for n in repos)
    when = dt.datetime.fromtimestamp(newest, dt.timezone.utc).isoformat(timespec="seconds")
    return Pending(list(found.values()), sorted(repos), when)


def check_advisories(probes: Probes) -> Verdict:
    found = pending(probes)
    data = {"advisories": [a.as_dict() for a in found.advisories], "repos": found.repos, "cached": found.cached}
    if not found.advisories:
        return Verdict(Status.OK, f"no pending security advisory for the stack's packages (dnf's cache of "
                       f"{found.cached}, {', '.join(found.repos)})", data=data)
    shown = "; ".join(f"{a.id} ({a.severity}{', ' + ', '.join(a.cves) if a.cves else ''}): "
                      f"{', '.join(a.packages)}" for a in found.advisories[:3])
    more = f"; and {len(found.advisories) - 3} more" if len(found.advisories) > 3 else ""
    return Verdict(Status.WARNING, f"{len(found.advisories)} pending security advisor"
                   f"{'y' if len(found.advisories) == 1 else 'ies'} for the stack (dnf's cache of {found.cached}): "
                   f"{shown}{more}", data=data, fixes=advisory_fixes(probes, found.advisories))


def advisory_fixes(probes: Probes, advisories: list[Advisory]) -> list[fixes.Fix]:
    """The advisories applied by the image's own dnf (through chroot under --root: dnf reads its plugins'
    configuration, and so the lock list, from the machine it runs on), the locks that hold their packages lifted
    first (packages-locked then asks for them again, at the new versions)."""
    from gpuprep.packages.probes import held

    names = sorted({nevra.rsplit(".", 1)[0].rsplit("-", 2)[0] for a in advisories for nevra in a.packages})
    locked = held(probes, names)
    unlock = fixes.unlock(probes.host, probes.platform, locked, "lift the versionlock that holds them") \
        if locked else None
    upgrade = fixes.in_image(probes.host, "apply the advisories", [
        "dnf", "upgrade", "-y", *(f"--advisory={a.id}" for a in advisories)])
    return [f for f in (unlock, upgrade) if f is not None]


CHECKS = [
    Check("distro-advisories", "packages", "no pending security advisory from the distribution (dnf's cached "
          "updateinfo) for Docker, containerd, runc, the NVIDIA toolkit and driver, the kernel",
          check_advisories, timeout=2 * QUERY_TIMEOUT + 10),
]
