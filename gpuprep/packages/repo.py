"""The package manager, as gpuprep needs it: one query for every candidate, one for what is installed,
one install transaction of exact NEVRAs, and version locks.

Two backends: dnf (Amazon Linux 2023, RHEL 8+) and yum 3 (Amazon Linux 1 and 2, RHEL 7: yum-utils
``repoquery`` and ``yum-plugin-versionlock``). With ``--root`` every command acts inside the root:
``--installroot``, the root's own ``/etc/yum.repos.d``, the root's lock list; nothing of the machine
running gpuprep changes. (dnf reads its plugin configuration from the running machine even with
``--installroot``, so the versionlock plugin would edit the machine's own list: inside a root
gpuprep edits the root's list itself, in the plugin's format.)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gpuprep.errors import BadInput, CommandError, PreconditionUnmet, StepFailed
from gpuprep.host import Host
from gpuprep.packages.resolve import Package
from gpuprep.packages.rpmdb import REPOQUERY_QF, copy_db, db_dir, installed, own_dbpath, parse_records
from gpuprep.platform import Platform

log = logging.getLogger("gpuprep")

REPOS_DIR = "/etc/yum.repos.d"
QUERY_TIMEOUT = 300  # a cold metadata download over a slow link
INSTALL_TIMEOUT = 1800

# What installs the versionlock command, per manager: AL2023 and RHEL 8+ ship it as
# python3-dnf-plugin-versionlock, which provides ``dnf-command(versionlock)`` (dnf resolves the provide);
# yum 3 (Amazon Linux 1 and 2, RHEL 7) as yum-plugin-versionlock.
VERSIONLOCK_PLUGIN = {"dnf": "dnf-command(versionlock)", "yum": "yum-plugin-versionlock"}
# The package behind each, by name, so the one repository query can tell whether any repository offers it.
VERSIONLOCK_PACKAGE = {"dnf": "python3-dnf-plugin-versionlock", "yum": "yum-plugin-versionlock"}


def lock_entry(p: Package, manager: str) -> str:
    """A version lock line as the plugin writes it: dnf ``name-E:V-R.*``; yum ``E:name-V-R.*``."""
    e = p.evr.epoch or 0
    if manager == "dnf":
        return f"{p.name}-{e}:{p.evr.version}-{p.evr.release}.*"
    return f"{e}:{p.name}-{p.evr.version}-{p.evr.release}.*"


def lock_name(entry: str) -> str | None:
    """The package name a lock line locks (either plugin's format), or None for a comment/blank."""
    entry = entry.strip().lstrip("!")
    if not entry or entry.startswith("#"):
        return None
    if ":" in entry.split("-")[0]:  # yum: E:name-V-R.A
        entry = entry.split(":", 1)[1]
        return entry.rsplit("-", 2)[0]
    head = entry.rsplit("-", 2)  # dnf: name-E:V-R.A
    return head[0] if len(head) == 3 else entry


def lock_entries(text: str) -> list[str]:
    """Entries of a lock list, or of ``yum versionlock list`` / ``dnf versionlock list`` output: the plugins
    print the list's lines as they are, around their own chatter (``Loaded plugins: ...``,
    ``versionlock list done``, dnf's ``Last metadata expiration check: ...``)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or " " in line or line.endswith(":"):
            continue
        if lock_name(line) is not None:
            out.append(line)
    return out


def dependency_errors(text: str) -> list[str]:
    """The dependency problems in a failed transaction's output, one line each.

    yum 3 prints ``Error: Package: P (repo)`` then ``Requires: D`` and the candidates it weighed
    (``Installed:`` / ``Available:``); dnf 4 prints `` - nothing provides D needed by P`` or
    ``package P requires D, but none of the providers can be installed``.
    """
    problems: list[str] = []
    package = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Error: Package: "):
            package = line[len("Error: Package: "):].split(" (")[0]
        elif line.startswith("Requires: ") and package:
            problems.append(f"{package} requires {line[len('Requires: '):]}")
        elif line.startswith("Installed: ") and problems and package:
            problems[-1] += f" (installed: {line[len('Installed: '):].split(' (')[0]})"
        elif line.startswith("- nothing provides ") or (line.startswith("- package ") and " requires " in line):
            problems.append(line[2:].split(", but none of the providers")[0])
    return problems


@dataclass(frozen=True)
class Unreachable:
    """A repository whose metadata the package manager could not download."""

    repo: str  # its id ([section] of the .repo file)
    url: str  # what could not be fetched, as the manager said it ("" when it did not)
    error: str  # the manager's reason, one line

    def __str__(self) -> str:
        return f"{self.repo} ({self.url or 'no URL given'}: {self.error})"


# dnf 4 (libdnf/librepo), as Debian's dnf 4.14 prints them with -q and errorlevel 3:
#   Errors during downloading metadata for repository 'ID':
#     - Curl error (7): Couldn't connect to server for http://127.0.0.1:9/rpm/repodata/repomd.xml [Failed to ...]
#   Error: Failed to download metadata for repo 'ID': Cannot download repomd.xml: ... All mirrors were tried
#   Ignoring repositories: ID   (skip_if_unavailable=True: the query goes on without it, and exits 0)
_DNF_ERRORS = re.compile(r"Errors during downloading metadata for repository '([^']+)'")
_DNF_FAILED = re.compile(r"Failed to download metadata for repo '([^']+)':\s*(.*)")
_DNF_IGNORED = re.compile(r"Ignoring repositories: (.+)")
# yum 3 (yum/yumRepo.py and urlgrabber), as users report it:
#   http://HOST/PATH/repodata/repomd.xml: [Errno 14] PYCURL ERROR 22 - "The requested URL returned error: 404"
#   Trying other mirror.
#   Error: Cannot retrieve repository metadata (repomd.xml) for repository: ID. Please verify its path and try again
_YUM_FAILED = re.compile(r"Cannot retrieve repository metadata \(repomd\.xml\) for repository: ?(\S+?)\.?(?:\s|$)")
_YUM_URL = re.compile(r"^\s*((?:https?|ftp|file)://\S+): (\[Errno .*)")
_URL = re.compile(r"((?:https?|ftp|file)://[^\s\]]+)")


def unreachable_repos(text: str) -> dict[str, Unreachable]:
    """The repositories a query's stderr says could not be reached, by id, each with the URL that failed."""
    found: dict[str, Unreachable] = {}
    current = ""  # dnf: the repository its indented "- Curl error ..." lines are about
    yum_url = ("", "")  # yum: the last URL that failed, said before the repository's id
    for raw in text.splitlines():
        line = raw.strip()
        m = _DNF_ERRORS.search(line)
        if m:
            current = m.group(1)
            continue
        if line.startswith("- ") and current and current not in found:
            url = _URL.search(line)
            error = line[2:].split(" for ", 1)[0] if url else line[2:]
            found[current] = Unreachable(current, url.group(1) if url else "", error)
            continue
        m = _DNF_FAILED.search(line)
        if m:
            url = _URL.search(m.group(2))
            found.setdefault(m.group(1), Unreachable(m.group(1), url.group(1) if url else "", m.group(2)))
            continue
        m = _DNF_IGNORED.search(line)
        if m:
            for repo in (r.strip() for r in m.group(1).split(",")):
                found.setdefault(repo, Unreachable(repo, "", "metadata not downloaded"))
            continue
        m = _YUM_URL.match(raw)
        if m:
            yum_url = (m.group(1), m.group(2))
            continue
        m = _YUM_FAILED.search(line)
        if m:
            found.setdefault(m.group(1), Unreachable(m.group(1), yum_url[0], yum_url[1] or line))
    return found


class RepoUnreachable(StepFailed):
    """The package manager could not download a repository's metadata."""

    reference = "repo-unreachable"


def repo_sections(text: str) -> dict[str, str]:
    """``[id] -> baseurl`` (else mirrorlist or metalink) of a .repo file's text."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif current is not None and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            current.setdefault(key.strip().lower(), value.strip().split()[0] if value.strip() else "")
    return {repo: keys.get("baseurl") or keys.get("mirrorlist") or keys.get("metalink") or ""
            for repo, keys in sections.items()}


@dataclass
class Backend:
    """What both managers share; subclasses give the argv."""

    host: Host
    platform: Platform
    manager: str  # "dnf" | "yum"
    queries: int = 0  # package-manager queries this run (bench/ counts them)
    # A dry run or doctor: the tree must stay as it is, so dnf keeps its logs, cache and state elsewhere.
    read_only: bool = False
    # Repositories the last query could not reach (skip_if_unavailable let it go on without them).
    unreachable: dict[str, Unreachable] = field(default_factory=dict)
    # A dry run's repository file the real run writes before its query ((target path, text)): dnf's queries then read
    # the target's repositories with it, from a scratch copy outside the tree, so the dry run resolves the pins the
    # real run will and meets the unreachable repository it will (issue 26).
    planned_repo: tuple[str, str] | None = None

    # -- argv ----------------------------------------------------------------------------
    def root_args(self, *, scratch: bool = False) -> list[str]:
        """The arguments that point the manager at the root, as a user types them (a hint's command); ``scratch``
        for gpuprep's own read-only queries (see below)."""
        planned = None
        if scratch and self.planned_repo is not None and self.manager == "dnf":
            planned = self._planned_reposdir(*self.planned_repo)
        if self.host.live:
            return [f"--setopt=reposdir={planned}"] if planned else []
        root = str(self.host.root)
        installroot = root
        if scratch and self.read_only and self.manager == "dnf":
            # dnf opens the installroot's rpm database, creating it where there is none and its sqlite -shm and
            # -wal where there is one, so a read-only query runs against a scratch root outside the tree, with
            # the tree's repositories and variables and a copy of its database where dnf looks (this machine's
            # %{_dbpath}): a dry run writes nothing in the tree and works on a read-only mount of it.
            installroot = f"{self.host.scratch()}/installroot"
            os.makedirs(installroot, exist_ok=True)
            db = db_dir(self.host)
            if db is not None:
                copy_db(self.host, db, installroot, own_dbpath(self.host))
        args = [f"--installroot={installroot}", f"--setopt=reposdir={planned or f'{root}/etc/yum.repos.d'}"]
        if installroot != root:
            args.append(f"--setopt=varsdir={root}/etc/dnf/vars,{root}/etc/yum/vars")
            if self.host.exists("/etc/dnf/dnf.conf"):
                # dnf reads the installroot's dnf.conf (skip_if_unavailable, proxy, timeouts): the scratch root has
                # none, so it is named, and the dry run's query behaves as the real run's will.
                args.append(f"--config={self.host.path('/etc/dnf/dnf.conf')}")
        # A root without system-release cannot tell dnf/yum its $releasever.
        if not self.host.exists("/etc/system-release") and self.platform.version_id:
            args.append(f"--releasever={self.platform.version_id}")
        return args

    def query_argv(self, names: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def install_argv(self, pkgs: Sequence[Package], extra: Sequence[str] = ()) -> list[str]:
        """The one transaction: exact NEVRAs of ``pkgs`` plus ``extra`` specs (the versionlock plugin)."""
        raise NotImplementedError

    def lock_argv(self, pkgs: Sequence[Package]) -> list[str]:
        return [self.manager, *self.root_args(), "versionlock", "add", *(p.nevra for p in pkgs)]

    # -- queries -------------------------------------------------------------------------
    def available(self, names: Sequence[str]) -> list[Package]:
        """Every version of ``names`` the enabled repositories offer: one package-manager run."""
        for path, text in self.repo_files().items():
            check_booleans(self.host.path(path), text)
        self.queries += 1
        done = self.host.run(self.query_argv(names), timeout=QUERY_TIMEOUT, check=False)
        self.unreachable = unreachable_repos(done.stderr)
        if done.returncode != 0:
            if self.unreachable:
                raise self.unreachable_error()
            raise CommandError(done.argv, done.returncode, done.stdout, done.stderr,
                               hint="check the repositories in /etc/yum.repos.d (network, TLS, GPG keys)")
        # -q quiets progress, not problems: a broken .repo file is reported on stderr with exit 0.
        for line in done.stderr.strip().splitlines()[:10]:
            log.warning("%s: %s", self.manager, line)
        return parse_records(done.stdout, tool=done.argv[0] if done.argv[0] != "dnf" else "dnf repoquery")

    def unreachable_error(self, consequence: str = "") -> RepoUnreachable:
        """The failure that names each unreachable repository, the URL that failed and the way round it."""
        repos = list(self.unreachable.values())
        where = {repo: url for path, text in self.repo_files().items()
                 for repo, url in repo_sections(text).items()}
        said = "; ".join(f"{r.repo} ({r.url or where.get(r.repo) or 'no URL given'}: {r.error})" for r in repos)
        return RepoUnreachable(
            f"{self.manager} could not download the metadata of {said}" + (f": {consequence}" if consequence else ""),
            "without internet, give gpuprep a .repo file of a mirror this host reaches (baseurl=file:///... or an "
            "internal https URL): `gpuprep install --repo-file FILE`; else let the host reach that URL",
            data={"unreachable": [{"repo": r.repo, "url": r.url or where.get(r.repo, ""), "error": r.error}
                                  for r in repos]})

    def repo_files(self) -> dict[str, str]:
        """The target's .repo files (host path -> text), the ones the package manager reads; in a dry run with the
        file the real run writes first (``planned_repo``)."""
        files: dict[str, str] = {}
        directory = self.host.path(REPOS_DIR)
        if directory.is_dir():
            for entry in sorted(directory.iterdir()):
                if entry.name.endswith(".repo"):
                    text = self.host.read_text(f"{REPOS_DIR}/{entry.name}")
                    if text is not None:
                        files[f"{REPOS_DIR}/{entry.name}"] = text
        if self.planned_repo is not None:
            files[self.planned_repo[0]] = self.planned_repo[1]
        return dict(sorted(files.items()))

    def _planned_reposdir(self, path: str, text: str) -> str:
        """A scratch copy of the target's repository directory with the planned file (``path``, ``text``), outside
        the tree (a dry run writes nothing there), made anew for each query."""
        directory = f"{self.host.scratch()}/repos"
        self.host.copy_out(REPOS_DIR, directory, {os.path.basename(path): text})
        return directory

    def installed(self, names: Sequence[str]) -> list[Package]:
        """What of ``names`` is installed: one ``rpm -q`` (no repository metadata)."""
        return installed(self.host, names)

    # -- install and lock ------------------------------------------------------------------
    def install(self, pkgs: Sequence[Package], extra: Sequence[str] = ()) -> None:
        # The longest wait of a run on a real instance: said before it starts, for cloud-init-output.log.
        log.info("installing %s with %s (up to %ds: downloads and the rpm transaction)",
                 ", ".join([*(p.nevr for p in pkgs), *extra]), self.manager, INSTALL_TIMEOUT)
        done = self.host.run(self.install_argv(pkgs, extra), timeout=INSTALL_TIMEOUT, check=False)
        if done.returncode == 0:
            return
        problems = dependency_errors(done.stdout + "\n" + done.stderr)
        if problems:
            raise StepFailed(f"{self.manager} refused the selection: {'; '.join(problems[:2])}",
                             "the repositories changed since the query, or a package outside gpuprep's choice "
                             "pins these; run `gpuprep install --dry-run` again and read the table")
        raise CommandError(done.argv, done.returncode, done.stdout, done.stderr,
                           hint=f"the exact packages could not be installed; try `{self.manager} install` by hand "
                                "with the versions above to see the package manager's reason")

    @property
    def target_manager(self) -> str:
        """The package manager of the target system, whose versionlock plugin and list count: dnf acting on
        an Amazon Linux 2 root (from an AL2023 builder without yum) must write yum's list, in yum's format,
        and install yum's plugin, because yum is what reads them once the image boots."""
        return self.platform.package_manager if self.platform.package_manager in ("dnf", "yum") else self.manager

    @property
    def lock_list(self) -> str:
        """The lock list's host path: the plugin's ``locklist =`` setting (dnf), else the platform's."""
        if self.target_manager == "dnf":
            conf = self.host.read_text("/etc/dnf/plugins/versionlock.conf") or ""
            for line in conf.splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "locklist" and value.strip().startswith("/"):
                    return value.strip()
            return "/etc/dnf/plugins/versionlock.list"
        return self.platform.versionlock_list or "/etc/yum/pluginconf.d/versionlock.list"

    def locks(self) -> list[str]:
        """The lock list's entries (read from the file: no package-manager run)."""
        return lock_entries(self.host.read_text(self.lock_list) or "")

    def plugin_installed(self) -> bool:
        """The versionlock plugin is installed in the target (the root, or this system): without it the lock
        list is a file nobody reads. Both plugins ship their .conf; neither manager reads the list without it."""
        if self.target_manager == "dnf":
            return self.host.exists("/etc/dnf/plugins/versionlock.conf")
        return self.host.exists("/etc/yum/pluginconf.d/versionlock.conf")

    @property
    def plugin_spec(self) -> str:
        return VERSIONLOCK_PLUGIN[self.target_manager]

    @property
    def plugin_package(self) -> str:
        return VERSIONLOCK_PACKAGE[self.target_manager]

    def unlocked(self, pkgs: Sequence[Package]) -> list[Package]:
        """Which of ``pkgs`` the lock list does not hold at exactly their version."""
        have = set(self.locks())
        return [p for p in pkgs if lock_entry(p, self.target_manager) not in have]

    def stale_locks(self, pkgs: Sequence[Package]) -> list[str]:
        """Lock entries that hold a name of ``pkgs`` at another version."""
        names = {p.name for p in pkgs}
        wanted = {lock_entry(p, self.target_manager) for p in pkgs}
        return [e for e in self.locks() if lock_name(e) in names and e not in wanted]

    def drop_locks(self, names: set[str]) -> None:
        text = self.host.read_text(self.lock_list)
        if text is None:
            return
        kept = [line for line in text.splitlines() if lock_name(line) not in names]
        if len(kept) != len(text.splitlines()):
            self.host.write_atomic(self.lock_list, "\n".join(kept).strip("\n") + "\n")

    def lock(self, pkgs: Sequence[Package]) -> None:
        """Lock ``pkgs`` at their versions, replacing older locks of the same names."""
        names = {p.name for p in pkgs}
        text = self.host.read_text(self.lock_list) or ""
        stale = [line for line in text.splitlines() if lock_name(line) in names]
        if self.host.live and self.plugin_installed() and not stale and self.target_manager == self.manager:
            self.host.run(self.lock_argv(pkgs), timeout=120)
            return
        # Inside a root (or replacing stale entries): the list itself, atomically, in the plugin's format.
        kept = [line for line in text.splitlines() if lock_name(line) not in names]
        added = ["# Added by gpuprep", *(lock_entry(p, self.target_manager) for p in pkgs)]
        self.host.write_atomic(self.lock_list, "\n".join([*kept, *added]).strip("\n") + "\n")


# The boolean options of a repository section (libdnf's ConfigRepo and yum's RepoConf), and the spellings both
# read (libdnf OptionBool). dnf only warns on another value and goes on with the default: an ``enabled=maybe``
# meant as off is then queried, a ``gpgcheck=flase`` checks nothing.
REPO_BOOLEANS = ("enabled", "gpgcheck", "repo_gpgcheck", "localpkg_gpgcheck", "skip_if_unavailable", "sslverify",
                 "module_hotfixes", "enablegroups", "countme")
TRUE_FALSE = ("1", "yes", "true", "on", "0", "no", "false", "off")


def check_booleans(path: object, text: str) -> None:
    """BadInput (exit 2) naming the file, the line and the option of a boolean option that is neither true nor
    false, before the package manager reads it."""
    for number, line in enumerate(text.split("\n"), 1):
        key, eq, value = line.partition("=")
        if eq and key.strip().lower() in REPO_BOOLEANS and value.strip().lower() not in TRUE_FALSE:
            raise BadInput(f"{path}, line {number}: {key.strip()}={value.strip()} is not a boolean",
                           f"write {key.strip()}=1 or {key.strip()}=0 (dnf and yum read 1/0, yes/no, true/false, "
                           "on/off)")


class DnfBackend(Backend):
    def base_args(self) -> list[str]:
        # Debian's dnf-plugins-core enables `local`, which breaks every installroot install (docs/testbed.md 4);
        # gpuprep never wants it. Inside a root the machine's versionlock list does not apply.
        args = ["dnf", "-q", "--disableplugin=local"]
        if not self.host.live:
            # Inside a root every plugin dnf loads is this machine's, not the image's, and some write outside the
            # installroot: Debian's dnf-plugins-core has generate_completion_cache (this machine's
            # /var/cache/dnf/packages.db after each transaction, issue 23), post-transaction-actions (this
            # machine's actions), versionlock (this machine's list), local (its own repository). gpuprep's
            # transaction needs none of them; the image's lock list it writes itself.
            args.append("--noplugins")
        root_args = self.root_args(scratch=True)
        args += root_args
        installroot = next((a.split("=", 1)[1] for a in root_args if a.startswith("--installroot=")), "")
        # dnf writes dnf.log, dnf.librepo.log and dnf.rpm.log under logdir and repository metadata under
        # cachedir on every query. Inside a root they go to a scratch directory outside it, removed when the run
        # ends: an image carries no build-time cache or logs. A read-only run keeps dnf's state (persistdir) out
        # too; a real install's history stays with the image's rpm database.
        scratched = ["log", "cache", "persist"] if self.read_only else [] if self.host.live else ["log", "cache"]
        if scratched:
            scratch = self.host.scratch()
            for d in scratched:
                os.makedirs(f"{scratch}/{d}", exist_ok=True)
                args.append(f"--setopt={d}dir={_beside_installroot(installroot, f'{scratch}/{d}')}")
        return args

    def query_argv(self, names: Sequence[str]) -> list[str]:
        # -q sets errorlevel 2, which also hides the repositories skip_if_unavailable skipped ("Failed to download
        # metadata for repo ...", "Ignoring repositories: ..."): errorlevel 3 brings warnings back, not progress.
        return [*self.base_args(), "--setopt=errorlevel=3", "repoquery", "--showduplicates", "--qf", REPOQUERY_QF,
                *names]

    def install_argv(self, pkgs: Sequence[Package], extra: Sequence[str] = ()) -> list[str]:
        # A dry run shows the command the real run runs: the target as its installroot, its own repositories (the
        # read-only scratch root and repository copy are the dry run's queries' alone).
        real = replace(self, read_only=False, planned_repo=None) if self.read_only else self
        return [*real.base_args(), "-y", "install", *(p.nevra for p in pkgs), *extra]


def _beside_installroot(installroot: str, path: str) -> str:
    """``path`` as dnf's --setopt must give it to mean ``path`` itself: dnf 4's CLI joins the installroot in front
    of cachedir, logdir and persistdir whatever their priority (dnf/cli/cli.py, ``prepend_installroot``), which
    put a dry run's scratch directories in ROOT/tmp/gpuprep-* (issue 23), while libdnf opens hawkey.log at the
    value as given. ``/../../..`` + ``path``, as many ``..`` as the installroot is deep, is ``path`` either way:
    joined, the ``..`` climb out of the installroot to /; alone, ``..`` of / is /."""
    if not installroot:
        return path
    depth = len([p for p in os.path.realpath(installroot).split("/") if p])
    return "/" + "../" * depth + path.lstrip("/")


class YumBackend(Backend):
    def query_argv(self, names: Sequence[str]) -> list[str]:
        # yum-utils repoquery: --show-duplicates (yum 3 spelling), -q, and the same list tags as dnf.
        return ["repoquery", "-q", *self.root_args(), "--show-duplicates", "--qf", REPOQUERY_QF, *names]

    def install_argv(self, pkgs: Sequence[Package], extra: Sequence[str] = ()) -> list[str]:
        args = ["yum", "-y", "-q", *self.root_args()]
        if not self.host.live:  # the machine's own lock list does not apply inside a root
            args.append("--disableplugin=versionlock")
        return [*args, "install", *(p.nevra for p in pkgs), *extra]


def backend_for(host: Host, platform: Platform, *, read_only: bool = False) -> Backend:
    """The platform's own manager; where this machine lacks it (acting on a --root from another
    system), whichever of dnf or yum it has."""
    preferred = platform.package_manager if platform.package_manager in ("dnf", "yum") else "dnf"
    order = [preferred, "yum" if preferred == "dnf" else "dnf"]

    def have(name: str) -> bool:
        # With --root the package manager runs from this machine, not from inside the root: Host.tool is this
        # machine's PATH, what Host.run would execute.
        return host.tool(name) is not None

    for manager in order:
        tools = ["dnf"] if manager == "dnf" else ["yum", "repoquery"]
        if all(have(t) for t in tools):
            cls = DnfBackend if manager == "dnf" else YumBackend
            return cls(host, platform, manager, read_only=read_only)
    raise PreconditionUnmet(
        f"no package manager: {platform.package_manager or 'dnf'} not found",
        "install dnf (or yum and yum-utils for repoquery)",
    )
