"""The one reader of installed packages: where a host's rpm database is (so a query never creates one),
rpm's query format and its parser (shared with repoquery's), and ``installed``.

``rpm -q --root T`` opens ``T/%{_dbpath}`` with *this machine's* macros, and rpm creates a database
that is not there. Debian's rpm sets ``%_dbpath`` to ``~/.rpmdb``, so a query from a Debian build
machine made ``T/root/.rpmdb`` inside the image (issue 12). So inside --root rpm is only asked with an
explicit ``--dbpath`` naming a directory of the tree that holds a database already.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence

from gpuprep.errors import BadInput, CommandError
from gpuprep.host import Host
from gpuprep.packages.evr import EVR, Dep
from gpuprep.packages.resolve import Package

log = logging.getLogger("gpuprep")

# Where rpm keeps its database: /var/lib/rpm (Amazon Linux, RHEL 7-9), /usr/lib/sysimage/rpm (Fedora 36+,
# rpm's own default since 4.17). Checked after this machine's own %{_dbpath}, where fixture trees put it.
DB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
# The files of rpm's database backends: sqlite (rpm 4.16+), bdb, ndb.
DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")


def db_dir(host: Host) -> str | None:
    """The directory of ``host``'s tree that holds its rpm database (this machine's own %{_dbpath} first, where
    fixture trees put it), or None when there is none."""
    own = own_dbpath(host)
    for d in ((own,) if own.startswith("/") else ()) + DB_DIRS:
        if any(host.path(f"{d}/{f}").is_file() for f in DB_FILES):
            return d
    return None


def own_dbpath(host: Host) -> str:
    """This machine's rpm's %{_dbpath}: where rpm and dnf look inside any --root / --installroot."""
    return host.run(["rpm", "--eval", "%{_dbpath}"], check=False, timeout=30).stdout.strip()


# (copy's directory) -> the source files' (name, size, mtime) when copied: a copy is refreshed once they change.
_copied: dict[str, tuple[tuple[str, int, int], ...]] = {}
# doctor's checks run in threads and several ask rpm at once (ecs-init, the fabric manager's package, the stack):
# one copies while the others wait for that copy, rather than each copying over the others (EEXIST).
_copying = threading.Lock()


def copy_db(host: Host, d: str, top: str, at: str) -> None:
    """Copy the tree's database directory ``d`` to ``top``/``at`` on this machine, where rpm and dnf may write
    what they like (sqlite creates ``-shm`` and ``-wal`` files beside a WAL database just to read it), unless an
    up-to-date copy is there already (a transaction of this run changes the source: the copy follows)."""
    with _copying:
        _copy_db(host, d, f"{top}{at}")


def _copy_db(host: Host, d: str, dest: str) -> None:
    src = host.path(d)
    files = sorted(e.name for e in os.scandir(src) if e.is_file(follow_symlinks=False))
    stamp = tuple((f, (st := os.lstat(src / f)).st_size, st.st_mtime_ns) for f in files)
    if _copied.get(dest) == stamp and os.path.isdir(dest):
        return
    host.copy_out(d, dest)
    _copied[dest] = stamp


def db_args(host: Host) -> list[str] | None:
    """rpm's arguments that read ``host``'s database (none on the running system, whose rpm knows its
    own), or None when the tree holds no rpm database: then nothing is installed there.

    Inside --root rpm reads a copy, in the run's scratch directory outside the root: opening the image's sqlite
    database creates or changes its ``-shm`` and ``-wal`` files, and fails on a read-only mount (issue 23)."""
    if host.live:
        return []
    d = db_dir(host)
    if d is None:
        return None
    top = f"{host.scratch()}/rpmdb"
    copy_db(host, d, top, d)
    return ["--root", top, "--dbpath", d]


FIELD = "<:>"  # never in a package name, EVR or dependency
RECORD = "<;>"
# rpm -q: one line per dependency, "name<TAB>flags<TAB>evr", then the record's end.
RPM_QF = (
    "%{NAME}" + FIELD + "%{EPOCHNUM}" + FIELD + "%{VERSION}" + FIELD + "%{RELEASE}" + FIELD + "%{ARCH}" + FIELD
    + "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]" + FIELD
    + "[%{PROVIDENAME} %{PROVIDEFLAGS:depflags} %{PROVIDEVERSION}\n]" + FIELD
    + "[%{OBSOLETENAME} %{OBSOLETEFLAGS:depflags} %{OBSOLETEVERSION}\n]" + FIELD
    + "[%{CONFLICTNAME} %{CONFLICTFLAGS:depflags} %{CONFLICTVERSION}\n]" + RECORD + "\n"
)
# dnf repoquery and yum-utils repoquery both print list tags one entry a line ("docker >= 20.10.0").
REPOQUERY_QF = FIELD.join(["%{name}", "%{epoch}", "%{version}", "%{release}", "%{arch}", "%{requires}",
                           "%{provides}", "%{obsoletes}", "%{conflicts}", "%{repoid}"]) + RECORD


def parse_deps(text: str) -> tuple[Dep, ...]:
    """One dependency a line, as rpm's ``[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\\n]`` and
    repoquery print them; rpmlib(), file and rich dependencies are left out.

    >>> [str(d) for d in parse_deps('''containerd >= 1.7.27
    ... rpmlib(CompressedFileNames) <= 3.0.4-1
    ... /bin/sh
    ... (docker-cli if docker)
    ... libc.so.6(GLIBC_2.34)(64bit)''')]
    ['containerd >= 1.7.27', 'libc.so.6(GLIBC_2.34)(64bit)']
    """
    deps = []
    for line in text.splitlines():
        line = " ".join(line.split())
        # rpmlib() and file dependencies are rpm's own business; rich deps "(a or b)" are dnf's.
        if not line or line.startswith(("rpmlib(", "/", "(")):
            continue
        try:
            deps.append(Dep.parse(line))
        except ValueError:
            log.debug("ignoring dependency %r", line)
    return tuple(deps)


def parse_records(stdout: str, repo: str = "", tool: str = "the package manager") -> list[Package]:
    """Records of ``RPM_QF``/``REPOQUERY_QF`` output -> packages.

    A record gpuprep cannot read (a plugin printing into stdout, a truncated line) raises StepFailed
    naming ``tool`` and the field: output of another program is input, not a bug of gpuprep's. ``rpm -q`` of two
    packages, one of them absent (fields ``<:>``, records ``<;>``; requires, provides, obsoletes, conflicts):

    >>> [pkg] = parse_records('''package nvidia-container-toolkit is not installed
    ... docker<:>0<:>25.0.8<:>1.amzn2023.0.5<:>x86_64<:>containerd >= 1.7.27
    ... runc >= 1.1.14
    ... <:>docker = 25.0.8-1.amzn2023.0.5
    ... <:><:><;>''', tool="rpm")
    >>> pkg.nevr, pkg.arch, [str(d) for d in pkg.requires]
    ('docker-25.0.8-1.amzn2023.0.5', 'x86_64', ['containerd >= 1.7.27', 'runc >= 1.1.14'])
    """
    out = []
    for record in stdout.split(RECORD):
        record = record.strip("\n")
        if FIELD not in record:
            _no_stray_line(record, tool)
            continue
        _no_stray_line(record.split(FIELD, 1)[0].rpartition("\n")[0], tool)
        fields = record.split(FIELD)
        shown = record.strip()[:120]
        if len(fields) < 5:
            raise _unreadable(tool, f"a record has {len(fields)} fields, expected name, epoch, version, release "
                              f"and arch: {shown!r}")
        name, epoch, version, release, arch = (f.strip() for f in fields[:5])
        # "package foo is not installed" lines from rpm -q can precede a record.
        name = name.splitlines()[-1].strip() if name else ""
        if not name or not version:
            raise _unreadable(tool, f"a record without a {'name' if not name else 'version'}: {shown!r}")
        if epoch not in ("", "(none)") and not epoch.isdigit():
            raise _unreadable(tool, f"epoch {epoch!r} of {name} is not a number")
        requires, provides, obsoletes, conflicts = (parse_deps(f) for f in (fields[5:9] + ["", "", "", ""])[:4])
        repoid = fields[9].strip() if len(fields) > 9 else repo
        e = int(epoch) if epoch not in ("", "0", "(none)") else None
        out.append(Package(name, EVR(version, release, e), arch, requires, provides, obsoletes, conflicts, repo=repoid))
    return out


# What rpm -q prints on stdout besides the records gpuprep asked for: an answer, not garbage.
_NOT_INSTALLED = re.compile(r"package \S+ is not installed")


def _no_stray_line(text: str, tool: str) -> None:
    """Output outside the records asked for (a wrapper's banner, a plugin's print, a version mismatch's
    message, with exit 0) means the command did not answer what was asked: BadInput naming the line."""
    for line in text.splitlines():
        if line.strip() and not _NOT_INSTALLED.fullmatch(line.strip()):
            raise _unreadable(tool, f"it printed {line.strip()[:120]!r}, not a record of the query")


def _unreadable(tool: str, problem: str) -> BadInput:
    """Garbage from the package manager with exit 0 is bad input (exit 2), named, nothing changed: taking it for an
    answer read as "nothing installed, nothing offered" and went on (issue 23)."""
    return BadInput(f"cannot read the output of {tool}: {problem}",
                    f"run {tool} by hand (gpuprep -v shows the command) and fix what makes it print that "
                    "(a plugin, a wrapper script or a broken repository file, most often)")


def installed(host: Host, names: Sequence[str]) -> list[Package]:
    """What of ``names`` is installed: one ``rpm -q`` (no repository metadata); [] when the tree holds no
    rpm database (a query would create one inside the image)."""
    root = db_args(host)
    if root is None or not names:
        return []
    done = host.run(["rpm", "-q", *root, "--qf", RPM_QF, *names], timeout=60, check=False)
    # rpm -q exits with the count of names not installed; that is an answer, not a failure.
    if done.returncode != 0 and RECORD not in done.stdout and "is not installed" not in done.stdout:
        raise CommandError(done.argv, done.returncode, done.stdout, done.stderr)
    return [Package(p.name, p.evr, p.arch, p.requires, p.provides, p.obsoletes, p.conflicts, "@System")
            for p in parse_records(done.stdout, tool="rpm -q")]


def rpm_installed(host: Host, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``name -> name-[epoch:]version-release`` for each of ``names`` installed (``rpm -q``, inside --root);
    {} where this machine has no rpm (a Debian host: nothing rpm-installed to report)."""
    if not names or not _which_rpm(host):
        return {}
    found: dict[str, str] = {}
    for p in installed(host, names):
        found[p.name] = p.nevr  # the newest wins where several are installed
    return found


def _which_rpm(host: Host) -> bool:
    # rpm runs on this machine even with --root (rpm --root reads the image's database).
    return (host.which("rpm") if host.live else host.tool("rpm")) is not None


def dpkg_installed(host: Host, names: Sequence[str]) -> dict[str, str]:
    """``name -> version`` for each of ``names`` dpkg has installed (Ubuntu hosts); inside --root, from the
    tree's own /var/lib/dpkg."""
    admindir = [] if host.live else [f"--admindir={host.path('/var/lib/dpkg')}"]
    done = host.run(["dpkg-query", *admindir, "-W", "-f", "${Package} ${Version} ${db:Status-Status}\n", *names],
                    timeout=10, check=False)
    out = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "installed":
            out[parts[0]] = parts[1]
    return out


def owner(host: Host, path: str, package_format: str) -> str | None:
    """The package that owns host path ``path`` by the package database (present or not: a deleted file is
    still listed), so reinstalling it brings the file back; None when no package owns it or no database says.

    ``rpm -qf`` (inside --root with the tree's own database) or ``dpkg-query -S``."""
    if package_format == "rpm":
        root = db_args(host) if _which_rpm(host) else None
        if root is None:
            return None
        done = host.run(["rpm", "-qf", *root, "--qf", "%{NAME}\n", path], timeout=30, check=False)
        # "file X is not owned by any package" comes with exit 1; several owners print one name a line.
        names = done.stdout.split() if done.returncode == 0 else []
    elif package_format == "dpkg":
        admindir = [] if host.live else [f"--admindir={host.path('/var/lib/dpkg')}"]
        done = host.run(["dpkg-query", *admindir, "-S", path], timeout=10, check=False)
        # "nvidia-container-toolkit-base: /usr/bin/nvidia-container-runtime" (several: "a, b: /path")
        line = done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
        names = [n.strip().split(":")[0] for n in line.rsplit(": ", 1)[0].split(",")] if line else []
    else:
        return None
    return names[0] if names else None
