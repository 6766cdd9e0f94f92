"""Where a host's rpm database is, so a query never creates one.

``rpm -q --root T`` opens ``T/%{_dbpath}`` with *this machine's* macros, and rpm creates a database
that is not there. Debian's rpm sets ``%_dbpath`` to ``~/.rpmdb``, so a query from a Debian build
machine made ``T/root/.rpmdb`` inside the image (issue 12). So inside --root rpm is only asked with an
explicit ``--dbpath`` naming a directory of the tree that holds a database already.
"""

from __future__ import annotations

from gpuprep.host import Host

# Where rpm keeps its database: /var/lib/rpm (Amazon Linux, RHEL 7-9), /usr/lib/sysimage/rpm (Fedora 36+,
# rpm's own default since 4.17). Checked after this machine's own %{_dbpath}, where fixture trees put it.
DB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
# The files of rpm's database backends: sqlite (rpm 4.16+), bdb, ndb.
DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")


def db_args(host: Host) -> list[str] | None:
    """rpm's arguments that read ``host``'s database (none on the running system, whose rpm knows its
    own), or None when the tree holds no rpm database: then nothing is installed there."""
    if host.live:
        return []
    own = host.run(["rpm", "--eval", "%{_dbpath}"], check=False, timeout=30).stdout.strip()
    for d in ((own,) if own.startswith("/") else ()) + DB_DIRS:
        if any(host.path(f"{d}/{f}").is_file() for f in DB_FILES):
            return ["--root", str(host.root), "--dbpath", d]
    return None


def rpm_installed(host: Host, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``name -> name-[epoch:]version-release`` for each of ``names`` installed (``rpm -q``, inside --root).

    Nothing is asked when the host has no rpm or the root holds no rpm database: ``rpm -q --root``
    would create an empty database inside the image.
    """
    if not names or not _which_rpm(host):
        return {}
    from gpuprep.packages.rpmdb import db_args

    root = db_args(host)
    if root is None:
        return {}
    proc = host.run(["rpm", "-q", *root, "--qf", "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}\\n", *names],
                    check=False, timeout=30)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 4 or parts[0] not in names:
            continue
        name, epoch, version, release = parts
        evr = f"{epoch}:{version}-{release}" if epoch not in ("", "(none)", "0") else f"{version}-{release}"
        found[name] = f"{name}-{evr}"  # the newest wins where several are installed
    return found


def _which_rpm(host: Host) -> bool:
    import shutil

    # rpm runs on this machine even with --root (rpm --root reads the image's database).
    return (host.which("rpm") if host.live else shutil.which("rpm")) is not None
