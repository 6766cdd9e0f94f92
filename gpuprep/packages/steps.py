"""install's package steps: repositories, packages (preflight, before them, is ``gpuprep/preflight.py``).

The query of the enabled repositories runs once per run and is shared through ``PackagesRun``: the
repositories step asks it "are the runtime packages reachable?", the packages step resolves on it.
A converged host (the installed set already agrees and is locked) asks nothing of the repositories:
``rpm -q`` of the installed set decides first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gpuprep.errors import BadInput, PreconditionUnmet, StepFailed
from gpuprep.interrupts import deferred
from gpuprep.packages.lock import wait_for_lock
from gpuprep.packages.repo import REPOS_DIR, Backend, backend_for, lock_entry, lock_name
from gpuprep.packages.resolve import (
    LEGACY,
    QUERY_NAMES,
    RUNTIME_PATH,
    TOOLKIT,
    NoSolution,
    Package,
    Selection,
    resolve,
)
from gpuprep.packages.security import floor, vulnerable
from gpuprep.report import StepResult, plural
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, file_diff

log = logging.getLogger("gpuprep")

# NVIDIA's current repository file, as published at
# https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo (docs/domain.md).
TOOLKIT_REPO_NAME = "nvidia-container-toolkit.repo"
TOOLKIT_REPO = """\
[nvidia-container-toolkit]
name=nvidia-container-toolkit
baseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch
repo_gpgcheck=1
gpgcheck=0
enabled=1
gpgkey=https://nvidia.github.io/libnvidia-container/gpgkey
sslverify=1
sslcacert=/etc/pki/tls/certs/ca-bundle.crt

[nvidia-container-toolkit-experimental]
name=nvidia-container-toolkit-experimental
baseurl=https://nvidia.github.io/libnvidia-container/experimental/rpm/$basearch
repo_gpgcheck=1
gpgcheck=0
enabled=0
gpgkey=https://nvidia.github.io/libnvidia-container/gpgkey
sslverify=1
sslcacert=/etc/pki/tls/certs/ca-bundle.crt
"""

# The legacy nvidia-docker repository file (https://nvidia.github.io/nvidia-docker/<dist>/nvidia-docker.repo):
# three repositories per distribution, GPG-checked metadata, each signed with the key at the root of its
# project (not under stable/). NVIDIA archived it with toolkit 1.15.
LEGACY_REPO_NAME = "nvidia-docker.repo"
_LEGACY_SECTION = """\
[{name}]
name={name}
baseurl=https://nvidia.github.io/{path}/{dist}/$basearch
repo_gpgcheck=1
gpgcheck=0
enabled=1
gpgkey=https://nvidia.github.io/{name}/gpgkey
sslverify=1
sslcacert=/etc/pki/tls/certs/ca-bundle.crt
"""


def legacy_repo(dist: str) -> str:
    sections = [("libnvidia-container", "libnvidia-container/stable"),
                ("nvidia-container-runtime", "nvidia-container-runtime/stable"),
                ("nvidia-docker", "nvidia-docker")]
    return "\n".join(_LEGACY_SECTION.format(name=n, path=p, dist=dist) for n, p in sections)


def legacy_dist(ctx: Context) -> str:
    """NVIDIA's distribution path segment: amzn2, amzn2018.03, centos7, rhel8.x ..."""
    p = ctx.platform
    if p.id == "amzn":
        return f"amzn{p.major}"
    if p.major == "7":
        return "centos7"
    return f"{'rhel' if p.id == 'rhel' else 'centos'}{p.version_id if '.' in p.version_id else p.major}"


# -- shared state ------------------------------------------------------------------------------
@dataclass
class PackagesRun:
    """What install's package steps learn once per run and hand on (``ctx.shared(PackagesRun)``)."""

    backend: Backend | None = None
    installed: list[Package] | None = None  # the installed set of QUERY_NAMES; None: not asked yet
    candidates: list[Package] | None = None  # every offered version; None: not asked yet
    plugin_offered: bool = True  # an enabled repository offers the versionlock plugin
    converged: Selection | None = None
    converged_known: bool = False  # ``converged`` was decided (None is an answer too)
    repo_added: str | None = None  # the repository file the repositories step wrote
    repo_before: str | None = None  # what that file held before (None: it did not exist)
    transaction_started: bool = False  # the packages step ran its transaction (its failure may have changed the host)
    # For docker-runtime: daemon.json as it was before the transaction (nvidia-docker2 <= 2.4.0 replaces it),
    # whether the transaction installed anything, and the runtime binary of the selected stack.
    daemon_json_before: str | None = None
    changed: bool = False
    runtime_path: str | None = None
    selection: Selection | None = None  # what the packages step selected (a dry run's plan included)

    def forget_installed(self) -> None:
        """The transaction or a new repository changed what a query would say: ask again."""
        self.installed, self.converged, self.converged_known = None, None, False


def backend(ctx: Context) -> Backend:
    run = ctx.shared(PackagesRun)
    if run.backend is None:
        run.backend = backend_for(ctx.host, ctx.platform, read_only=ctx.dry_run)
    return run.backend


def installed_set(ctx: Context) -> list[Package]:
    run = ctx.shared(PackagesRun)
    if run.installed is None:
        run.installed = backend(ctx).installed(QUERY_NAMES)
    return run.installed


def candidates(ctx: Context) -> list[Package]:
    """Every offered version of every package gpuprep decides: one package-manager query per run."""
    run = ctx.shared(PackagesRun)
    if run.candidates is None:
        b = backend(ctx)
        # The versionlock plugin's package rides along in the same query: whether a repository offers it is
        # known at plan time, not when the transaction fails. It is not a candidate of the selection.
        found = b.available([*QUERY_NAMES, b.plugin_package])
        run.plugin_offered = any(p.name == b.plugin_package for p in found)
        run.candidates = [p for p in found if p.name != b.plugin_package]
    return run.candidates


def _wanted_stack(ctx: Context) -> str:
    return ctx.install_options.runtime or "auto"


def converged_selection(ctx: Context) -> Selection | None:
    """The installed set, when it already is a complete agreeing selection (and locked, unless
    --no-versionlock): then nothing needs the repositories."""
    run = ctx.shared(PackagesRun)
    if run.converged_known:
        return run.converged
    installed = installed_set(ctx)
    result: Selection | None = None
    if installed:
        stack = _wanted_stack(ctx)
        sel = resolve(installed, installed, stack=stack, docker=ctx.install_options.docker_version,
                      allow_vulnerable=_allow_vulnerable(ctx))
        if isinstance(sel, Selection) and not sel.to_install:
            sel.why = {n: "installed; agrees with the rest" for n in sel.packages}
            sel.passed_over = []
            b = backend(ctx)
            # Locked means enforced: the entries are in the list and the plugin that reads it is installed.
            locked = not ctx.install_options.versionlock or (
                b.plugin_installed() and not b.unlocked(list(sel.packages.values())))
            result = sel if locked else None
    run.converged, run.converged_known = result, True
    return result


def _allow_vulnerable(ctx: Context) -> bool:
    return ctx.install_options.allow_vulnerable


def _offered(ctx: Context, pkgs: list[Package]) -> bool:
    names = {p.name for p in pkgs}
    stack = _wanted_stack(ctx)
    if stack == "toolkit":
        return TOOLKIT[0] in names
    if stack == "legacy":
        return LEGACY[0] in names
    return TOOLKIT[0] in names or LEGACY[0] in names


# -- repositories --------------------------------------------------------------------------------
@dataclass
class _RepoFile:
    """The repositories step's plan: the .repo file to write."""

    path: str
    content: str


class RepositoriesStep(Step[_RepoFile]):
    id = "repositories"
    title = "add NVIDIA's repository (or --repo-file) when the runtime packages are not reachable"

    def plan(self, ctx: Context) -> Change[_RepoFile] | Converged:
        repo_file = ctx.install_options.repo_file
        if repo_file:
            return self._plan_file(ctx, Path(repo_file))
        if converged_selection(ctx) is not None:
            return Converged("runtime packages installed and locked; repositories not consulted")
        if _offered(ctx, candidates(ctx)):
            repos = sorted({p.repo for p in candidates(ctx) if p.name in LEGACY + TOOLKIT and p.repo})
            return Converged(f"runtime packages offered by {', '.join(repos) or 'the enabled repositories'}")
        if _wanted_stack(ctx) == "legacy":
            name, content = LEGACY_REPO_NAME, legacy_repo(legacy_dist(ctx))
        else:
            name, content = TOOLKIT_REPO_NAME, TOOLKIT_REPO
        return self._plan_write(ctx, f"{REPOS_DIR}/{name}", content, "NVIDIA's repository")

    def _plan_file(self, ctx: Context, src: Path) -> Change[_RepoFile] | Converged:
        try:
            content = src.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"--repo-file {src}: {exc.strerror if isinstance(exc, OSError) else exc}",
                           "give the path of a readable .repo file") from None
        if "[" not in content or "baseurl" not in content and "mirrorlist" not in content \
                and "metalink" not in content:
            raise BadInput(f"--repo-file {src}: not a yum/dnf repository file (no [section] with a baseurl)",
                           "give a .repo file like NVIDIA's nvidia-container-toolkit.repo")
        for line in content.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "sslverify" and value.strip().lower() in ("0", "false", "no"):
                raise BadInput(f"--repo-file {src}: sslverify=0 turns TLS checks off",
                               "gpuprep never disables TLS; fix the CA (sslcacert=) instead")
        name = src.name if src.name.endswith(".repo") else f"{src.name}.repo"
        return self._plan_write(ctx, f"{REPOS_DIR}/{name}", content, f"--repo-file {src}")

    def _plan_write(self, ctx: Context, path: str, content: str, what: str) -> Change[_RepoFile] | Converged:

        before = ctx.host.read_text(path)
        if before == content:
            return Converged(f"{path} in place ({what})")
        diff = file_diff(path, before, content)
        b = backend(ctx)
        if ctx.dry_run and b.manager == "dnf":
            # The real run writes the file, then queries: the dry run's query reads it too (from a scratch copy), so
            # the packages step shows the pins, or the unreachable repository, the real run will meet.
            b.planned_repo = (path, content)
            run = ctx.shared(PackagesRun)
            run.candidates, run.converged, run.converged_known = None, None, False
        return Change(f"add {path} ({what})", diff=diff, data={"repo_file": path}, payload=_RepoFile(path, content))

    def apply(self, ctx: Context, change: Change[_RepoFile]) -> Applied:
        path, content = change.payload.path, change.payload.content
        run = ctx.shared(PackagesRun)
        run.repo_before = ctx.host.read_text(path)
        # Registered before the write (certbot's reverter.py register_file_creation): a signal that lands once the
        # file is in place, before this step's next line, still finds it to undo (tests/reliability/
        # test_registered_changes.py).
        run.repo_added = path
        if run.repo_before is not None:
            ctx.host.backup(path)
        ctx.host.write_atomic(path, content, mode=0o644)
        # The repositories changed: the next query must see them (once more, only in this case).
        run.candidates, run.converged, run.converged_known = None, None, False
        return Applied()

    def undo(self, ctx: Context, failed: StepResult) -> str | None:
        """A run whose packages step failed before its transaction installed nothing from the file this step
        added (an unreachable repository, nothing that resolves), or a run a signal ended before that transaction
        (SIGTERM, SIGHUP, SIGINT, this step's own write included): the file goes, the host is left as found."""
        run = ctx.shared(PackagesRun)
        path = run.repo_added
        ended_before = failed.id == PackagesStep.id or "interrupted" in failed.data
        if path is None or run.transaction_started or not ended_before:
            return None
        run.repo_added = None
        if run.repo_before is None:
            if not ctx.host.remove(path):
                return None  # the signal came before the write: nothing to undo
            done = f"removed {path}, which this run added"
        else:
            ctx.host.write_atomic(path, run.repo_before)
            done = f"put back the {path} this run replaced"
        return f"{done} (nothing was installed from it)"


# -- packages ------------------------------------------------------------------------------------
@dataclass
class _Transaction:
    """The packages step's plan: the selection, what of it to install, whether to lock it, and the versionlock
    plugin's spec when it joins the transaction."""

    selection: Selection
    installs: list[Package]
    lock: bool
    extra: list[str]


class PackagesStep(Step["_Transaction | None"]):
    """Its plan is None only in a dry run before NVIDIA's repository is added (nothing to select yet)."""

    id = "packages"
    title = "resolve ecs-init, Docker and the NVIDIA runtime that agree; install them in one transaction; lock"

    def plan(self, ctx: Context) -> Change[_Transaction | None] | Converged:
        b = backend(ctx)
        sel = converged_selection(ctx)
        if sel is not None:
            self._publish(ctx, sel, changed=False)
            return Converged(f"{self._brief(sel)} installed and locked", data=self._data(ctx, sel), table=sel.table())
        if ctx.dry_run and b.manager != "dnf" and not _offered(ctx, candidates(ctx)) \
                and not ctx.install_options.repo_file:
            # yum 3's repoquery is not pointed at a scratch copy of the repositories (dnf's query reads the planned
            # repository, ``Backend.planned_repo``): said, not guessed.
            return Change("resolve after NVIDIA's repository is added (dry run: its packages are not known yet)",
                          commands=[b.install_argv([]) + ["<selection>"]], payload=None)
        res = resolve(candidates(ctx), installed_set(ctx), stack=_wanted_stack(ctx),
                      docker=ctx.install_options.docker_version, allow_vulnerable=_allow_vulnerable(ctx))
        if isinstance(res, NoSolution):
            self._no_solution(ctx, res)
        installs = res.to_install
        lock = ctx.install_options.versionlock
        to_lock = b.unlocked(list(res.packages.values())) if lock else []
        # A lock list without the plugin is a file nobody reads: the plugin joins the same transaction.
        extra = [b.plugin_spec] if lock and not b.plugin_installed() else []
        if extra and not ctx.shared(PackagesRun).plugin_offered:
            raise PreconditionUnmet(
                f"the versionlock plugin is not installed and no enabled repository offers it ({b.plugin_package},"
                f" {extra[0]}): the locks would be a list nobody reads; nothing was installed",
                f"enable a repository that offers {b.plugin_package}, or run `gpuprep install --no-versionlock` "
                "(then nothing stops a later update from moving these packages)")
        self._publish(ctx, res, changed=bool(installs))
        if not installs and not to_lock and not extra:
            return Converged(f"{self._brief(res)} installed and locked", data=self._data(ctx, res), table=res.table())
        commands = []
        stale = b.stale_locks(installs)
        if installs or extra:
            commands.append(b.install_argv(installs, extra))
        data, lines = self._data(ctx, res), []
        if to_lock:
            lock_cmd = self._lock_command(ctx, b, list(res.packages.values()), plugin_coming=bool(extra))
            if lock_cmd:
                commands.append(lock_cmd)
            else:
                lines = [f"lock in {ctx.host.path(b.lock_list)}: {lock_entry(p, b.target_manager)}"
                                 for p in res.packages.values()]
        if stale:
            lines.insert(0, f"drop stale locks: {', '.join(stale)}")
        below_floor = {p.name for p in installed_set(ctx) if vulnerable(p.name, p.evr.version)}
        frozen = [e for e in stale if lock_name(e) in below_floor]
        if frozen:
            # A versionlock (the ECS AMI locks nvidia*) froze a toolkit below the security floor: said, then replaced.
            lines.insert(0, f"the versionlock froze a vulnerable toolkit ({', '.join(frozen)}): replaced "
                                    "by the selection's lock")
        what = [f"install {', '.join(p.nevr for p in installs)}"] if installs else []
        if res.replaced_vulnerable:
            what.append(f"replace the installed toolkit below the security floor ({res.replaced_vulnerable[0]})")
        if extra:
            what.append(f"install the versionlock plugin ({extra[0]})")
        if to_lock:
            what.append(f"lock {plural(len(res.packages), 'package')}")
        data["versionlock_plugin"] = extra[0] if extra else None
        return Change("; ".join(what), commands=commands, data=data, table=res.table(), lines=lines,
                      payload=_Transaction(res, installs, bool(to_lock), extra))

    def apply(self, ctx: Context, change: Change[_Transaction | None]) -> Applied:
        b, run = backend(ctx), ctx.shared(PackagesRun)
        if change.payload is None:
            raise RuntimeError("the packages step planned no transaction: that plan is a dry run's")
        sel, installs, lock, extra = (change.payload.selection, change.payload.installs, change.payload.lock,
                                      change.payload.extra)
        waited = None
        if installs or extra:
            waited = wait_for_lock(ctx.host, ctx.platform.package_locks)
            run.transaction_started = True
            # nvidia-docker2 <= 2.4.0 ships daemon.json as a plain file and replaces the user's outright
            # (docs/domain.md); docker-runtime merges this copy back so no setting is lost.
            run.daemon_json_before = ctx.host.read_text(ctx.platform.daemon_json)
            # A signal now waits for the transaction (certbot's error_handler defers signals through its cleanup):
            # the exception it would raise makes subprocess SIGKILL the package manager, half way through its rpm
            # transaction. The package manager gets a terminal's Ctrl-C or systemd's stop itself (they signal the
            # whole group or cgroup) and decides; gpuprep ends, interrupted, once it has.
            with deferred():
                # A lock at another version would make the versionlock plugin hide the selected one.
                b.drop_locks({p.name for p in installs})
                b.install(installs, extra)
            run.forget_installed()
            after = {p.name: p for p in installed_set(ctx)}
            wrong = [p.nevr for p in installs if p.name not in after or after[p.name].evr.compare(p.evr) != 0]
            if wrong:
                raise StepFailed(f"after the transaction these are not installed as selected: {', '.join(wrong)}",
                                 f"look at `{b.manager} history info last`")
            if extra and not b.plugin_installed():
                raise StepFailed(f"the transaction did not install the versionlock plugin ({extra[0]})",
                                 f"check that a repository offers it: `{b.manager} install '{extra[0]}'`")
        if lock:
            b.lock(list(sel.packages.values()))
        run.changed = bool(installs)
        return Applied(f"{change.summary} ({waited})" if waited else None)

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _brief(sel: Selection) -> str:
        return ", ".join(p.nevr for p in sel.packages.values())

    @staticmethod
    def _lock_command(ctx: Context, b: Backend, pkgs: list[Package], *, plugin_coming: bool = False
                      ) -> list[str] | None:
        """The versionlock command on a live host (the plugin installed, or coming in the same transaction);
        None inside a root, where gpuprep writes the root's list itself (the plugin would edit this machine's)."""
        if ctx.host.live and (b.plugin_installed() or plugin_coming):
            return b.lock_argv(pkgs)
        return None

    @staticmethod
    def _publish(ctx: Context, sel: Selection, *, changed: bool) -> None:
        ctx.extra["selection"] = sel.as_dict()
        run = ctx.shared(PackagesRun)
        run.runtime_path, run.changed, run.selection = RUNTIME_PATH, changed, sel

    @staticmethod
    def _data(ctx: Context, sel: Selection) -> dict[str, Any]:
        b = backend(ctx)
        return {
            "stack": sel.stack,
            "selection": [
                {"name": n, "nevra": p.nevra, "evr": str(p.evr), "why": sel.why.get(n, ""),
                 "installed": n in sel.installed and sel.installed[n].evr.compare(p.evr) == 0}
                for n, p in sel.packages.items()
            ],
            "passed_over": sel.passed_over,
            "notes": sel.notes,
            "security": {"floor": floor(), "vulnerable_selected": sel.vulnerable,
                         "vulnerable_replaced": sel.replaced_vulnerable},
            "package_manager": b.manager,
            "queries": b.queries,
        }

    @staticmethod
    def _no_solution(ctx: Context, res: NoSolution) -> NoReturn:
        ctx.extra["no_solution"] = {"stack": res.stack, "message": res.message, "conflicts": res.conflicts,
                                    "notes": res.notes, "cves": res.cves}
        b = backend(ctx)
        if b.unreachable:
            # Not offered because not reached: the cause is the repository, not the packages.
            raise b.unreachable_error(f"without it, {res.message}")
        for line in res.table():
            log.error("%s", line)
        if res.cves:
            raise StepFailed(res.message, "nothing was installed; add a repository that offers "
                             f"nvidia-container-toolkit {floor()} or newer (NVIDIA's, or --repo-file), or accept the "
                             "risk with --allow-vulnerable", data={"cves": res.cves, "floor": floor()})
        detail = "; ".join(res.conflicts[:2])
        raise StepFailed(
            f"{res.message}" + (f": {detail}" if detail else ""),
            "nothing was installed; pick versions that agree with --docker VERSION or --runtime, "
            "or add a repository that offers them (--repo-file)",
        )


__all__ = ["RepositoriesStep", "PackagesStep"]
