"""install's preflight, repositories and packages steps against real dnf and rpm, into a --root installroot.

Real components: rpmbuild + createrepo_c build the fixture repository (tests/rpmfixtures.py), gpuprep
runs the machine's dnf with --installroot and the root's own /etc/yum.repos.d, rpm -q reads the root's
database. Simulated: the packages themselves (fixtures shaped like Amazon Linux 2023's docker and
ecs-init and NVIDIA's toolkit packages, docs/domain.md); the root is not a whole Amazon Linux system, only
its os-release (no GPU here either: preflight reports the warning).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, REPO, require, require_root
from contract import json_output
from rpmfixtures import PkgSpec, build_repo, repo_file, rpm_query_root

GPUPREP = [str(REPO / ".venv" / "bin" / "gpuprep")] if (REPO / ".venv" / "bin" / "gpuprep").exists() else ["gpuprep"]
STEPS = "preflight,repositories,packages"


def toolkit(v: str) -> list[PkgSpec]:
    # NVIDIA's toolkit RPMs: one version across the four, and the toolkit provides the legacy name.
    return [
        PkgSpec("nvidia-container-toolkit", v, "1", requires=[f"nvidia-container-toolkit-base = {v}-1",
                                                            f"libnvidia-container-tools >= {v}"],
                provides=["nvidia-container-runtime"], obsoletes=["nvidia-container-runtime < 3.14.0-1"],
                files={"/usr/bin/nvidia-ctk-fixture": "#!/bin/sh\nexit 0\n"}),
        PkgSpec("nvidia-container-toolkit-base", v, "1",
                files={"/usr/bin/nvidia-container-runtime": "#!/bin/sh\nexit 0\n"}),
        PkgSpec("libnvidia-container-tools", v, "1", requires=[f"libnvidia-container1 = {v}-1"]),
        PkgSpec("libnvidia-container1", v, "1"),
    ]


# AL2023 ships the versionlock command as python3-dnf-plugin-versionlock (dnf-plugins-core), which provides
# dnf-command(versionlock) and owns /etc/dnf/plugins/versionlock.{conf,list}; gpuprep installs it by the provide.
VERSIONLOCK_PLUGIN = PkgSpec(
    "python3-dnf-plugin-versionlock", "4.3.0", "13.amzn2023.0.4", provides=["dnf-command(versionlock)"],
    files={"/etc/dnf/plugins/versionlock.conf": "[main]\nenabled = 1\nlocklist = /etc/dnf/plugins/versionlock.list\n",
           "/etc/dnf/plugins/versionlock.list": ""},
    config_noreplace=["/etc/dnf/plugins/versionlock.conf", "/etc/dnf/plugins/versionlock.list"])

AL2023_SPECS = [
    PkgSpec("docker", "20.10.25", "1.amzn2023.0.1"),
    PkgSpec("docker", "25.0.6", "1.amzn2023.0.2"),
    PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]),
    # A newer ecs-init that needs a Docker the repository does not have yet (ecs-init has raised its floor
    # over time: docker >= 17.06.2ce, then >= 20.10.0 since 1.97.1): it must be passed over, and say why.
    PkgSpec("ecs-init", "1.99.0", "1.amzn2023", requires=["docker >= 26.0.0"]),
    *toolkit("1.16.2"),
    *toolkit("1.19.1"),
    # The legacy stack, shaped like nvidia-docker2 2.5-2.13 (%config daemon.json, needs the runtime by
    # range) and nvidia-container-runtime 3.x; the toolkit obsoletes nvidia-container-runtime < 3.14.0.
    PkgSpec("nvidia-docker2", "2.13.0", "1", requires=["nvidia-container-runtime >= 3.13.0-1", "docker >= 18.06.1"],
            files={"/etc/docker/daemon.json": '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", '
                                              '"runtimeArgs": []}}}\n'}, config=["/etc/docker/daemon.json"]),
    PkgSpec("nvidia-container-runtime", "3.13.0", "1",
            files={"/usr/bin/nvidia-container-runtime": "#!/bin/sh\nexit 0\n"}),
    VERSIONLOCK_PLUGIN,
]
NAMES = ["ecs-init", "docker", "nvidia-container-toolkit", "nvidia-container-toolkit-base",
         "libnvidia-container-tools", "libnvidia-container1"]
# name-[epoch:]version-release, docs/contract.md's selection shape
NEVR = re.compile(r"^(?P<name>[^\s]+)-(?:\d+:)?[^-:\s]+-[^-:\s]+$")


@pytest.fixture
def root(tmp_path: Path, request) -> Path:
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    repo = build_repo(AL2023_SPECS, cache / "repo-al2023", cache=cache / "pkgs")
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": repo}))
    return r


def gpuprep(root: Path, *args: str, json_out: bool = False) -> subprocess.CompletedProcess:
    argv = [*GPUPREP, "--root", str(root), *(["--json"] if json_out else []), "install", "--only", STEPS, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def installed_with_times(root: Path) -> str:
    """Every installed package with its install transaction id: any transaction changes it."""
    return subprocess.run(["rpm", "-qa", "--root", str(root), "--qf", "%{NEVRA} %{INSTALLTID}\n"],
                          capture_output=True, text=True, check=True).stdout


def test_install_then_converged_run_changes_nothing(root: Path) -> None:
    first = gpuprep(root, json_out=True)
    assert first.returncode == 0, first.stderr
    report = json_output(first.stdout)
    assert report["selection"] == {
        "ecs-init": "ecs-init-1.97.1-1.amzn2023", "docker": "docker-25.0.6-1.amzn2023.0.2",
        "nvidia-container-toolkit": "nvidia-container-toolkit-1.19.1-1",
        "nvidia-container-toolkit-base": "nvidia-container-toolkit-base-1.19.1-1",
        "libnvidia-container-tools": "libnvidia-container-tools-1.19.1-1",
        "libnvidia-container1": "libnvidia-container1-1.19.1-1",
    }
    assert all(NEVR.match(v) and NEVR.match(v)["name"] == k for k, v in report["selection"].items())
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["packages"]["status"] == "changed"
    # The root had no versionlock plugin: it joined the same transaction (one install tid for all).
    assert steps["packages"]["data"]["versionlock_plugin"] == "dnf-command(versionlock)"
    tids = {line.split()[0]: line.split()[1] for line in subprocess.run(
        ["rpm", "-q", "--root", str(root), "--qf", "%{NAME} %{INSTALLTID}\n", "docker", "ecs-init",
         "python3-dnf-plugin-versionlock"], capture_output=True, text=True, check=True).stdout.splitlines()}
    assert len(set(tids.values())) == 1, tids
    assert (root / "etc/dnf/plugins/versionlock.conf").is_file()
    assert steps["packages"]["data"]["queries"] == 1  # one repoquery for every candidate
    # Installed for real, in the root only, and locked in the root's own list.
    installed = rpm_query_root(root, NAMES)
    assert installed["docker"] == "docker-0:25.0.6-1.amzn2023.0.2"
    assert all(installed.values()), installed
    assert (root / "usr/bin/nvidia-container-runtime").is_file()
    locks = (root / "etc/dnf/plugins/versionlock.list").read_text()
    assert "docker-0:25.0.6-1.amzn2023.0.2.*" in locks and "ecs-init-0:1.97.1-1.amzn2023.*" in locks
    rpmdb = installed_with_times(root)
    log = root / "var/log/dnf.rpm.log"
    log_before = log.read_text() if log.exists() else ""

    time.sleep(0.05)
    second = gpuprep(root, json_out=True)
    assert second.returncode == 0, second.stderr
    again = json_output(second.stdout)
    assert again["status"] == "ok"
    assert {s["id"]: s["status"] for s in again["steps"] if s["id"] in STEPS.split(",")} == {
        "preflight": "ok", "repositories": "ok", "packages": "ok"}
    assert again["selection"] == report["selection"]
    pk = next(s for s in again["steps"] if s["id"] == "packages")
    assert pk["data"]["queries"] == 0  # converged: no repository metadata at all
    # No transaction: the rpm database and dnf's rpm log are untouched.
    assert installed_with_times(root) == rpmdb
    assert (log.read_text() if log.exists() else "") == log_before


def test_the_packages_step_waits_for_the_package_lock_before_its_transaction(root: Path) -> None:
    """dnf's pid lock in the root is held by a real process acting on the tree (busybox-static's cat on a FIFO,
    chrooted into it, as a dnf run inside the image would be) until the test has seen the packages step say it
    waits for it: then the holder ends, and the step installs; its summary says whom it waited for. The holder
    ends on an event the test observes, never after a time: on a busy machine a 2 s holder was gone before the
    step looked (issue 23)."""
    import threading

    shutil.copy("/bin/busybox", root / "busybox")
    fifo = root / "hold.fifo"
    os.mkfifo(fifo)
    holder = subprocess.Popen(["chroot", str(root), "/busybox", "cat", "/hold.fifo"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30  # until chroot has exec'd busybox inside the tree: what the pid file names
    while psutil.Process(holder.pid).name() != "busybox" and time.monotonic() < deadline:
        time.sleep(0.01)
    # Reaped as soon as it ends, as init would reap a real dnf: a zombie's pid still exists, and dnf's own lock
    # (dnf/lock.py) waits for as long as the pid in its file exists.
    threading.Thread(target=holder.wait, daemon=True).start()
    waiting = f"waiting up to 600s for the package manager lock: pid {holder.pid}"
    err_lines: list[str] = []
    try:
        pidfile = root / "var/lib/dnf/rpmdb_lock.pid"
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{holder.pid}\n")
        argv = [*GPUPREP, "--root", str(root), "--json", "install", "--only", STEPS]
        run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
        stdout: list[str] = []
        reader = threading.Thread(target=lambda: stdout.append(run.stdout.read()), daemon=True)
        reader.start()  # stdout drained beside stderr: a full pipe never blocks the run
        for line in run.stderr:  # gpuprep's own line saying it waits: the event the holder ends on
            err_lines.append(line)
            if waiting in line:
                with open(fifo, "w"):
                    pass  # cat reads end-of-file and exits
                break
        err_lines.extend(run.stderr)
        assert run.wait(timeout=300) == 0, "".join(err_lines)
        reader.join(timeout=60)
        out = "".join(stdout)
        assert any(waiting in line for line in err_lines), "".join(err_lines)
        steps = {s["id"]: s for s in json_output(out)["steps"]}
        assert steps["packages"]["status"] == "changed"
        assert "waited" in steps["packages"]["summary"] and f"pid {holder.pid}" in steps["packages"]["summary"]
        assert holder.poll() is not None  # it had ended before the transaction ran
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def test_sigterm_during_the_transaction_lets_the_package_manager_finish_it(root: Path) -> None:
    """SIGTERM to gpuprep alone (a fleet agent's `kill PID`) once it has started dnf's install: the transaction
    completes, never SIGKILLed half way (subprocess kills its child when an exception leaves it), then the run
    ends interrupted, exit 1. The point is observed: gpuprep's own -v line starting `dnf -y install`."""
    import signal
    import threading

    argv = [*GPUPREP, "-v", "--root", str(root), "--json", "install", "--only", STEPS]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "NO_COLOR": "1"})
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(run.stdout.read()), daemon=True)
    reader.start()
    err_lines: list[str] = []
    for line in run.stderr:
        err_lines.append(line)
        if "gpuprep: run: " in line and " -y install " in line:
            os.kill(run.pid, signal.SIGTERM)
            break
    err_lines.extend(run.stderr)
    code = run.wait(timeout=300)
    reader.join(timeout=60)
    err = "".join(err_lines)
    assert any(" -y install " in line for line in err_lines), err
    steps = {s["id"]: s for s in json_output("".join(stdout))["steps"]}
    assert code == 1 and steps["packages"]["data"]["interrupted"] == "SIGTERM", err[-3000:]
    installed = rpm_query_root(root, ["docker", "ecs-init", "nvidia-container-toolkit", "libnvidia-container1"])
    assert all(installed.values()), f"the transaction was cut short: {installed}\n{err[-3000:]}"
    again = gpuprep(root, json_out=True)  # and the next run finishes what the interrupted one left
    assert again.returncode == 0, again.stderr


def test_dry_run_prints_selection_and_commands_and_changes_nothing(root: Path) -> None:
    before = sorted(str(p) for p in root.rglob("*"))
    host_list = Path("/etc/dnf/plugins/versionlock.list")
    host_before = host_list.read_bytes() if host_list.exists() else None
    out = gpuprep(root, "--dry-run")
    assert out.returncode == 0, out.stderr
    # The explanation table, as the text renderer prints it: header, a row per package with its why, and the
    # newer ecs-init passed over with the requirement that excluded it.
    lines = [line.strip() for line in out.stdout.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("package ") and line.endswith("why"))
    assert lines[header].split() == ["package", "selected", "why"]
    rows = {line.split()[0]: line for line in lines[header + 1: header + 7]}
    assert rows["ecs-init"].split()[1] == "ecs-init-1.97.1-1.amzn2023"
    assert "newest that agrees (1 newer passed over)" in rows["ecs-init"]
    assert rows["docker"].split()[1] == "docker-25.0.6-1.amzn2023.0.2"
    assert rows["nvidia-container-toolkit"].split()[1:3] == ["nvidia-container-toolkit-1.19.1-1", "newest"]
    assert ("passed over: ecs-init-1.99.0-1.amzn2023 needs docker >= 26.0.0; no Docker offered matches"
            in lines)
    # The one transaction, with the versionlock plugin in it.
    assert any(line.startswith("$ dnf ") and line.endswith("dnf-command(versionlock)")
               and "docker-25.0.6-1.amzn2023.0.2.noarch" in line for line in lines)
    assert "docker-25.0.6-1.amzn2023.0.2" in out.stdout
    assert "install ecs-init-1.97.1-1.amzn2023.noarch" in out.stdout  # the exact dnf install command
    assert "versionlock.list: docker-0:25.0.6-1.amzn2023.0.2.*" in out.stdout
    assert "newest Docker that ecs-init and nvidia-container-toolkit accept" in out.stdout
    assert all(v is None for v in rpm_query_root(root, NAMES).values())
    assert not (root / "etc/dnf/plugins/versionlock.list").exists()
    # dnf and rpm create their (empty) database, cache and logs when asked anything; nothing else appears.
    state = ("/var/cache", "/var/log", "/var/lib", "/root/.rpmdb", "/etc/dnf")
    after = [p for p in (str(p) for p in root.rglob("*"))
             if not any(p[len(str(root)):].startswith(s) for s in state)
             and p not in (str(root / "var"), str(root / "root"))]
    assert set(after) <= set(before), set(after) - set(before)
    # Nothing of the machine running gpuprep changes either (its own lock list, if any).
    assert (host_list.read_bytes() if host_list.exists() else None) == host_before


def test_no_solution_exits_1_and_installs_nothing(root: Path) -> None:
    out = gpuprep(root, "--docker", "19.03.13ce", json_out=True)
    assert out.returncode == 1
    report = json_output(out.stdout)
    assert report["status"] == "failed"
    assert "--docker 19.03.13ce" in report["error"]
    assert all(v is None for v in rpm_query_root(root, NAMES).values())


def test_repositories_step_adds_nvidia_repo_file_when_not_reachable(tmp_path: Path) -> None:
    require("dnf", "rpm")
    require_root()
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    out = gpuprep(r, "--dry-run", json_out=True)
    report = json_output(out.stdout)
    repos = next(s for s in report["steps"] if s["id"] == "repositories")
    assert repos["status"] == "planned"
    assert "+baseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch" in repos["diff"]
    assert "+repo_gpgcheck=1" in repos["diff"] and "+sslverify=1" in repos["diff"]
    assert not (r / "etc/yum.repos.d/nvidia-container-toolkit.repo").exists()


def test_repo_file_option_copies_the_given_file(root: Path, tmp_path: Path) -> None:
    given = tmp_path / "airgap.repo"
    given.write_text((root / "etc/yum.repos.d/fixture.repo").read_text().replace("[fixture]", "[airgap]"))
    out = gpuprep(root, "--repo-file", str(given), "--only", "preflight,repositories")
    assert out.returncode == 0, out.stderr
    assert (root / "etc/yum.repos.d/airgap.repo").read_text() == given.read_text()
    bad = tmp_path / "insecure.repo"
    bad.write_text("[x]\nbaseurl=https://example.com/\nsslverify=0\n")
    out = gpuprep(root, "--repo-file", str(bad))
    assert out.returncode == 2 and "sslverify=0" in out.stderr
    assert not (root / "etc/yum.repos.d/insecure.repo").exists()


def test_docker_forced_from_the_cli(root: Path) -> None:
    """``--docker VERSION`` end to end: an older Docker than the resolver would pick, installed and locked."""
    out = gpuprep(root, "--docker", "20.10.25", json_out=True)
    assert out.returncode == 0, out.stderr
    report = json_output(out.stdout)
    assert report["selection"]["docker"] == "docker-20.10.25-1.amzn2023.0.1"
    pk = next(s for s in report["steps"] if s["id"] == "packages")
    assert {r["name"]: r["why"] for r in pk["data"]["selection"]}["docker"] == "--docker 20.10.25"
    assert rpm_query_root(root, ["docker"])["docker"] == "docker-0:20.10.25-1.amzn2023.0.1"
    assert "docker-0:20.10.25-1.amzn2023.0.1.*" in (root / "etc/dnf/plugins/versionlock.list").read_text()
    again = json_output(gpuprep(root, "--docker", "20.10.25", json_out=True).stdout)
    assert again["status"] == "ok" and again["selection"] == report["selection"]


def test_legacy_runtime_from_the_cli(root: Path) -> None:
    """``--runtime legacy`` end to end: nvidia-docker2 + nvidia-container-runtime, though the toolkit is offered
    (auto would take it); the second run converges on the legacy stack without asking the repositories."""
    out = gpuprep(root, "--runtime", "legacy", json_out=True)
    assert out.returncode == 0, out.stderr
    report = json_output(out.stdout)
    assert report["selection"] == {
        "ecs-init": "ecs-init-1.97.1-1.amzn2023", "docker": "docker-25.0.6-1.amzn2023.0.2",
        "nvidia-docker2": "nvidia-docker2-2.13.0-1", "nvidia-container-runtime": "nvidia-container-runtime-3.13.0-1",
    }
    installed = rpm_query_root(root, ["nvidia-docker2", "nvidia-container-runtime", "nvidia-container-toolkit"])
    assert installed == {"nvidia-docker2": "nvidia-docker2-0:2.13.0-1",
                         "nvidia-container-runtime": "nvidia-container-runtime-0:3.13.0-1",
                         "nvidia-container-toolkit": None}
    assert (root / "etc/docker/daemon.json").is_file()  # nvidia-docker2's %config file, as 2.5.0+ ship it
    again = json_output(gpuprep(root, "--runtime", "legacy", json_out=True).stdout)
    pk = next(s for s in again["steps"] if s["id"] == "packages")
    assert pk["status"] == "ok" and pk["data"]["queries"] == 0
    assert again["selection"] == report["selection"]


def test_platform_manager_absent_uses_the_one_this_machine_has(tmp_path: Path) -> None:
    """An Amazon Linux 2 root (yum 3) acted on from this Debian machine, which has dnf and no yum."""
    require("dnf", "rpm")
    require_root()
    if shutil.which("yum") and shutil.which("repoquery"):
        pytest.skip("this machine has yum and repoquery: the fallback is not exercised")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2" / "etc" / "os-release", r / "etc" / "os-release")
    out = subprocess.run([*GPUPREP, "--root", str(r), "--json", "install", "--only", "preflight"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pre = json_output(out.stdout)["steps"][0]
    assert pre["data"]["package_manager"] == "dnf" and "Amazon Linux 2, dnf" in pre["summary"]


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry of the tree: its kind, mode, and content (files) or target (links)."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                what = "link " + os.readlink(p)
            elif p.is_file():
                what = "file " + hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = "dir"
            out[str(p.relative_to(root))] = f"{oct(st.st_mode)} {what}"
    return out


def test_dry_run_and_doctor_leave_the_tree_byte_identical(root: Path) -> None:
    """Real dnf and rpm on a --root tree, before and after an install: `install --dry-run` and `doctor`
    write nothing into it (no dnf log or cache, no rpm database where there was none, no lock file)."""
    for _ in range(2):  # a tree with no rpm database yet, then one with packages installed
        before = tree_digest(root)
        dry = gpuprep(root, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        doc = subprocess.run([*GPUPREP, "--root", str(root), "--json", "doctor", "--no-container"],
                             capture_output=True, text=True, timeout=300)
        assert "internal error" not in doc.stderr, doc.stderr
        after = tree_digest(root)
        assert after == before, sorted(set(after.items()) ^ set(before.items()))[:10]
        real = gpuprep(root)
        assert real.returncode == 0, real.stderr


def test_dnf_acting_on_an_al2_root_locks_the_way_yum_reads(tmp_path: Path) -> None:
    """dnf (this machine has no yum) on an Amazon Linux 2 root: the plugin to install is yum's, and the
    lock list is yum's file in yum's format, since yum is what reads it once the image boots."""
    from gpuprep.host import Host
    from gpuprep.packages.evr import EVR
    from gpuprep.packages.repo import backend_for
    from gpuprep.packages.resolve import Package
    from gpuprep.platform import detect

    require("dnf")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2" / "etc" / "os-release", r / "etc" / "os-release")
    host = Host(r)
    b = backend_for(host, detect(host))
    if b.manager != "dnf":
        pytest.skip("this machine has yum: the cross-manager case is not exercised")
    assert (b.target_manager, b.plugin_spec, b.lock_list) == (
        "yum", "yum-plugin-versionlock", "/etc/yum/pluginconf.d/versionlock.list")
    b.lock([Package("docker", EVR("25.0.6", "1.amzn2.0.1"), "x86_64")])
    assert (r / "etc/yum/pluginconf.d/versionlock.list").read_text().splitlines()[-1] == \
        "0:docker-25.0.6-1.amzn2.0.1.*"
    assert not (r / "etc/dnf").exists()


def test_no_repository_offers_the_versionlock_plugin_is_said_at_plan_time(tmp_path: Path, request) -> None:
    """A repository set without python3-dnf-plugin-versionlock (a mirror of NVIDIA's and Docker's packages
    only): the locks would be a list nobody reads, and the transaction would fail on the plugin after
    resolving everything. Said at plan time, exit 3, dry run and real run alike: the dry run leaves the
    tree byte-identical, the real run installs nothing (what it adds is dnf's own metadata cache, logs and
    empty database, and the lock file); the hint's --no-versionlock then installs."""
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    specs = [s for s in AL2023_SPECS if s is not VERSIONLOCK_PLUGIN]
    repo = build_repo(specs, cache / "repo-al2023-no-plugin", cache=cache / "pkgs")
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": repo}))
    before = tree_digest(r)
    for args in (("--dry-run",), ()):
        out = gpuprep(r, *args)
        assert out.returncode == 3, out.stderr
        error = next(line for line in out.stderr.splitlines() if line.startswith("gpuprep: error:"))
        assert "no enabled repository offers it (python3-dnf-plugin-versionlock" in error, out.stderr
        assert "gpuprep: hint: enable a repository that offers python3-dnf-plugin-versionlock, or run " \
               f"`gpuprep --root {r} install --no-versionlock`" in out.stderr
        if args:
            assert tree_digest(r) == before, "the dry run changed the tree"
        else:
            assert all(v is None for v in rpm_query_root(r, [*NAMES, VERSIONLOCK_PLUGIN.name]).values())
            # dnf's var/cache/dnf and var/log/dnf*.log, Debian rpm's ~/.rpmdb, gpuprep's lock file
            dnf_own = ("var", "var/cache", "var/log", "root", "run")
            added = [p for p in set(tree_digest(r)) - set(before)
                     if p not in dnf_own and not p.startswith(("var/cache/dnf", "var/log/", "root/.rpmdb", "run/lock"))]
            assert not added, f"the refused real run added {added}"
    fixed = gpuprep(r, "--no-versionlock")
    assert fixed.returncode == 0, fixed.stderr
    assert all(v is not None for v in rpm_query_root(r, NAMES).values())


# The discard port: nothing listens on this machine, so the connection is refused at once (no network needed).
UNREACHABLE = "http://127.0.0.1:9/libnvidia-container/stable/rpm/x86_64"


@pytest.mark.parametrize("skip_if_unavailable", [True, False], ids=["skip_if_unavailable", "strict"])
def test_an_unreachable_repository_is_named_and_the_file_this_run_added_goes(tmp_path: Path, request,
                                                                              skip_if_unavailable: bool) -> None:
    """A builder without internet: NVIDIA's repository (here its .repo file given with --repo-file, baseurl a port
    nothing listens on) cannot be reached; the enabled repository has Docker and ecs-init only. dnf either skips it
    (skip_if_unavailable=True, Debian's default) or stops (False): either way install names the repository and the
    URL that failed, not "not offered", suggests --repo-file, installs nothing and leaves no repository file behind
    (one it replaced is put back as it was), and says so. Real dnf with the root's own dnf.conf."""
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    specs = [s for s in AL2023_SPECS if not s.name.startswith(("nvidia", "libnvidia"))]
    repo = build_repo(specs, cache / "repo-al2023-no-nvidia", cache=cache / "pkgs")
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    (r / "etc" / "dnf").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": repo}))
    (r / "etc" / "dnf" / "dnf.conf").write_text(f"[main]\nskip_if_unavailable={skip_if_unavailable}\n")
    given = tmp_path / "nvidia.repo"
    given.write_text(f"[nvidia-container-toolkit]\nname=nvidia-container-toolkit\nbaseurl={UNREACHABLE}\n"
                     "enabled=1\ngpgcheck=0\n")
    added = r / "etc/yum.repos.d/nvidia.repo"

    out = gpuprep(r, "--repo-file", str(given), json_out=True)
    assert out.returncode == 1, out.stderr
    report = json_output(out.stdout)
    packages = next(s for s in report["steps"] if s["id"] == "packages")
    assert report["error"].startswith("packages: dnf could not download the metadata of nvidia-container-toolkit ("
                                      f"{UNREACHABLE}"), report["error"]
    assert "--repo-file FILE" in report["hint"] and f"gpuprep --root {r} install" in report["hint"]
    assert packages["data"]["unreachable"][0]["repo"] == "nvidia-container-toolkit"
    assert packages["summary"].endswith("; removed /etc/yum.repos.d/nvidia.repo, which this run added (nothing was "
                                        "installed from it)")
    assert not added.exists()
    assert all(v is None for v in rpm_query_root(r, NAMES).values())

    # A file of the same name that was there before is put back as it was; the text output says so.
    added.write_text("[mine]\nname=mine\nbaseurl=file:///srv/mine\nenabled=0\n")
    before = added.read_bytes()
    out = gpuprep(r, "--repo-file", str(given))
    assert out.returncode == 1
    assert "put back the /etc/yum.repos.d/nvidia.repo this run replaced" in out.stdout + out.stderr
    assert f"could not download the metadata of nvidia-container-toolkit ({UNREACHABLE}" in out.stderr
    assert added.read_bytes() == before
