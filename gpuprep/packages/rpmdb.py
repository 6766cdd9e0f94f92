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
