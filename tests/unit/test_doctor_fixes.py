"""The fixes doctor shows, end to end through the CLI (issue 26 item 3, issue 27 item 5): built for the platform
and the target, ordered by cause, each once, wrapped at 80 columns with commands on lines of their own.

SIMULATED: the GPU hosts are tests/hosttree.py trees acted on with ``--root`` (this machine has no GPU, driver or
Amazon Linux); the CLI, the checks, the runner and the renderers are the real ones, and so are ``rpm`` (its
database in the tree) and ``systemctl --root`` where the checks ask them. The fix of ecs-gpu-support is run as the
screen shows it and the finding is proved cleared.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import hosttree
import pytest
from conftest import REPO, require_toolkit
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app

pytestmark = pytest.mark.allow_subp("dpkg-query", "gpuprep", "rpm", "rpmbuild", "systemctl")

GPUPREP = REPO / ".venv" / "bin" / "gpuprep"
ENV = {"DOCKER_HOST": None, "COLUMNS": "80"}


def doctor(root: Path, *args: str) -> tuple[str, int]:
    result = CliRunner().invoke(app, ["--root", str(root), *args, "doctor", "--no-container"], env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.stdout, result.exit_code


def tree(tmp_path: Path, name: str) -> Path:
    return hosttree.build_named(name, tmp_path / name)


def checks(root: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json_output(doctor(root, "--json")[0])["checks"]}


def fix_block(text: str) -> list[str]:
    return text.split("To fix (", 1)[1].splitlines()[1:]


def shown_commands(text: str) -> list[str]:
    """The commands of the fix list as a user copies them: the lines indented under a `fix:`, a trailing ` \\`
    joining the next line."""
    commands: list[str] = []
    joining = False
    for line in fix_block(text):
        if line.startswith("         ") and (joining or not line.startswith("          ")):
            part = line.strip()
            if joining:
                commands[-1] += " " + part.removesuffix(" \\")
            else:
                commands.append(part.removesuffix(" \\"))
            joining = part.endswith(" \\")
    return commands


# -- measured on main (issue 26) ---------------------------------------------------------------------------
def test_module_not_loaded_starts_with_the_module_and_marks_it_for_the_booted_instance(tmp_path):
    """The first fix was `sudo nvidia-modprobe -u -c 0` (device nodes for a module that is not loaded), and under
    --root `modprobe nvidia` and `reboot` would have acted on the builder."""
    root = tree(tmp_path, "module-not-loaded-g4dn")
    text, code = doctor(root)
    assert code == 2
    block = fix_block(text)
    assert block[0] == "  fix: load the nvidia module into the running kernel (on an instance booted"
    assert shown_commands(text)[0] == "sudo modprobe nvidia"
    assert "nvidia-modprobe" not in text
    assert "  for: gpu-kernel-module (gpu-device-nodes, gpu-count, gpu-sources-listed" in "\n".join(block)
    found = checks(root)
    assert {found[c]["cause"] for c in ("gpu-device-nodes", "gpu-count", "gpu-sources-listed")} == \
        {"gpu-kernel-module"}
    assert [f["runs"] for f in found["gpu-kernel-module"]["fixes"]] == ["booted", "booted"]


def test_under_root_what_acts_on_a_running_system_is_marked_for_the_booted_instance(tmp_path):
    root = tree(tmp_path, "driver-drift-p5")
    found = checks(root)
    for check in found.values():
        for fix in check.get("fixes", []):
            words = fix["argv"][1:] if fix["argv"][:1] == ["sudo"] else fix["argv"]
            if words[:1] in (["reboot"], ["modprobe"], ["nvidia-smi"], ["systemctl"]) and "--root" not in \
                    " ".join(words):
                assert fix["runs"] == "booted", (check["id"], fix)
            elif fix["runs"] == "here" and fix["argv"]:
                # What runs here acts on the image: its path, --root, --installroot or chroot.
                assert str(root) in " ".join(fix["argv"]), (check["id"], fix)


def test_the_driver_lock_holds_nvidias_kmod_packages_not_the_systems_kmod(tmp_path):
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    assert "'kmod*'" not in text and "'kmod-nvidia*'" in text


def test_driver_drift_gives_each_fix_once(tmp_path):
    """gpu-driver-version and gpu-driver-drift both said the 240-character reboot-and-lock text, nearly alike."""
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    commands = shown_commands(text)
    assert len(commands) == len(set(commands)), commands
    assert commands.count("sudo reboot") == 1
    assert sum("versionlock add 'nvidia*'" in c for c in commands) == 1
    assert "       for: gpu-driver-version, gpu-driver-drift" in text


def test_packages_removed_since_the_seal_point_at_the_sealed_versions_not_a_fresh_install(tmp_path):
    """packages-installed said `gpuprep install` (today's versions) while packages-drift said put the sealed ones
    back: the host was told two contradicting things."""
    root = tree(tmp_path, "driver-drift-p5")
    found = checks(root)
    assert found["packages-drift"]["status"] == "warning"
    for check_id in ("packages-installed", "ecs-init"):
        assert found[check_id]["cause"] == "packages-drift" and "fixes" not in found[check_id], found[check_id]
    text, _ = doctor(root)
    assert not any(c.split()[:1] == ["gpuprep"] and "install" in c.split() for c in shown_commands(text))
    assert "for: packages-drift (ecs-init, packages-installed follow from it)" in text


def test_on_ubuntu_no_gpuprep_install_is_offered(tmp_path):
    """`gpuprep install --only ecs-config` exits 3 on Ubuntu (install's preflight is RPM-only)."""
    root = tree(tmp_path, "healthy-h200-ubuntu")
    text, _ = doctor(root)
    found = checks(root)
    assert found["ecs-gpu-support"]["status"] == "critical"
    said = [c for c in found.values() if re.search(r"(^|[ `])gpuprep (--root \S+ )?install", c["hint"])
            or any("gpuprep" in f["argv"][:2] for f in c.get("fixes", []))]
    assert not said, said
    assert not any(c.startswith(("gpuprep", "sudo gpuprep")) for c in shown_commands(text))
    proc = subprocess.run([str(GPUPREP), "--root", str(root), "install", "--only", "ecs-config"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr  # what used to be offered


def test_at_80_columns_lines_wrap_with_a_hanging_indent_and_commands_stand_alone(tmp_path):
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    lines = text.splitlines()
    # Longer only where one word is (pytest's long tmp_path): never a word cut in two.
    long = [line for line in lines[1:] if len(line) > 80 and len(line.removesuffix(" \\").split()) > 1]
    assert not long, long
    assert lines[0].startswith("GPUPREP CRITICAL - ")  # Nagios reads one line: never cut
    for line in lines[2:]:
        assert line == "" or line[0] != " " or line.startswith(" " * 2), line
        if line and not line[0].isspace():
            assert re.match(r"^(\w+ +\[|[A-Z]+: |To fix \()", line), f"a line that starts at column 0: {line!r}"
    for command in shown_commands(text):
        assert "`" not in command and shlex.split(command)  # a command on its own line, ready to paste


# -- hints that fix: the fix shown, run as shown, clears its finding ---------------------------------------
def test_gpu_support_without_ecs_init_points_at_ecs_init(tmp_path):
    """The ecs-config step refuses a host without ecs ("ecs is not installed", exit 1): the fix it was offered."""
    root = tree(tmp_path, "healthy-p5-h100x8")
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=training\n")
    found = checks(root)
    assert found["ecs-gpu-support"]["status"] == "critical" and found["ecs-gpu-support"]["cause"] == "ecs-init"
    assert "install --only ecs-config" not in doctor(root)[0]


def test_the_ecs_gpu_support_fix_as_shown_clears_it(tmp_path, request):
    """An ECS host's image (the simulated p5 tree, Amazon Linux 2023) with ecs-init in its rpm database (a fixture
    package, --justdb: only the database matters) and its unit, whose ecs.config leaves GPU support out: the command
    shown on its own line, pasted as a user would, clears ecs-gpu-support."""
    from rpmfixtures import PkgSpec, build_rpm

    root = tree(tmp_path, "healthy-p5-h100x8")
    rpm = build_rpm(PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]), tmp_path / "rpms",
                    cache=request.config.cache.mkdir("rpmfixtures"))
    subprocess.run(["rpm", "-i", "--root", str(root), "--nodeps", "--justdb", str(rpm)], check=True,
                   capture_output=True, timeout=120)
    unit = root / "usr/lib/systemd/system/ecs.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=Amazon ECS (stand-in unit)\n[Service]\nExecStart=/bin/true\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=training\n")
    assert checks(root)["ecs-gpu-support"]["status"] == "critical"
    text, _ = doctor(root)
    wanted = f"gpuprep --root {shlex.quote(str(root))} install --only ecs-config"
    assert wanted in shown_commands(text), text
    proc = subprocess.run([str(GPUPREP), *shlex.split(wanted)[1:]], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks(root)["ecs-gpu-support"]["status"] == "ok"


# -- the gpu checks' remaining prose as fixes (issue 26 item 3) --------------------------------------------
def spec_tree(tmp_path: Path, name: str, **changes) -> Path:
    import dataclasses

    return hosttree.build(tmp_path / name, dataclasses.replace(hosttree.load_spec(name), **changes))


def run_fix(fix: dict) -> subprocess.CompletedProcess:
    """A fix's argv run as shown, as root (this suite's user), with the system's PATH."""
    proc = subprocess.run(fix["argv"], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, (fix, proc.stdout + proc.stderr)
    return proc


@pytest.mark.allow_subp("dnf", "createrepo_c")
def test_no_libnvidia_ml_under_a_loaded_module_is_installed_from_the_package_that_ships_it(tmp_path, request):
    """The hint was prose ("install the driver userland matching the kernel module ..."). The fix is the target's
    package manager installing the package that ships /usr/lib64/libnvidia-ml.so.1 (dnf resolves a path to its
    package), run here with real dnf --installroot against a real repository (rpmbuild, createrepo_c) whose NVML
    package is a STAND-IN: the library's file name and its .so.1 link (made by its Lua scriptlet), no code. The
    second fix, ldconfig through chroot, is not run: the tree has no ldconfig, and doctor reads the link, not the
    linker's cache."""
    from rpmfixtures import PkgSpec, build_repo, repo_file

    root = spec_tree(tmp_path, "healthy-p5-h100x8", userland=None)
    found = checks(root)["gpu-driver-version"]
    assert found["status"] == "critical" and "libnvidia-ml.so.1 is missing" in found["summary"]
    install, cache = found["fixes"]
    assert install["argv"] == ["dnf", f"--installroot={root}", "install", "-y", "/usr/lib64/libnvidia-ml.so.1"]
    assert cache["argv"] == ["chroot", str(root), "ldconfig"] and install["runs"] == cache["runs"] == "here"
    lib = "/usr/lib64/libnvidia-ml.so.580.178.04"
    nvml = PkgSpec("nvidia-driver-cuda-libs", "580.178.04", "1.amzn2023", files={lib: "stand-in"},
                   provides=["/usr/lib64/libnvidia-ml.so.1"], lua=True,
                   post='posix.symlink("libnvidia-ml.so.580.178.04", "/usr/lib64/libnvidia-ml.so.1")')
    repo = build_repo([nvml], tmp_path / "repo", cache=request.config.cache.mkdir("rpmfixtures"))
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/yum.repos.d/driver.repo").write_text(repo_file({"driver": repo}))
    # The image's own dnf.conf, as Amazon Linux has one (without it dnf --installroot reads this machine's); the
    # fixture repository is unsigned.
    (root / "etc/dnf").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=0\n")
    run_fix(install)
    assert checks(root)["gpu-driver-version"]["status"] == "ok"


@pytest.mark.allow_subp("systemctl")
def test_device_nodes_missing_under_a_loaded_module(tmp_path):
    """The hint was `sudo nvidia-modprobe -u -c 0 ... or sudo systemctl enable --now nvidia-persistenced`, which
    under --root act on the builder. Now: nvidia-smi (it makes the nodes as it starts) marked for the booted
    instance, and nvidia-persistenced enabled in the image with `systemctl --root`, run here (real systemctl). The
    nodes themselves are the running driver's to make: the finding cannot clear in a tree (SIMULATED: no driver)."""
    unit = "[Unit]\nDescription=NVIDIA Persistence Daemon (stand-in unit)\n[Service]\nExecStart=/bin/true\n" \
           "[Install]\nWantedBy=multi-user.target\n"
    root = spec_tree(tmp_path, "healthy-p5-h100x8", nodes=0,
                     files={"/usr/lib/systemd/system/nvidia-persistenced.service": unit})
    every = checks(root)
    found = every["gpu-device-nodes"]
    assert found["status"] == "critical" and not found.get("cause")
    # PCI 8, /dev 0: the counts and the sources follow from the nodes missing, not from a driver to reboot.
    assert {every[c]["cause"] for c in ("gpu-count", "gpu-sources-listed")} == {"gpu-device-nodes"}
    assert "sudo reboot" not in shown_commands(doctor(root)[0])
    now, boot = found["fixes"]
    assert now == {"why": now["why"], "argv": ["sudo", "nvidia-smi"], "runs": "booted"}
    assert boot["argv"] == ["systemctl", f"--root={root}", "enable", "nvidia-persistenced.service"]
    assert boot["runs"] == "here"
    assert "nvidia-modprobe" not in doctor(root)[0]
    run_fix(boot)
    assert (root / "etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service").is_symlink()


def test_gpu_findings_of_the_running_system_are_for_the_booted_instance_under_root(tmp_path):
    """No GPU on the bus, and a module whose version text is unreadable: lspci, cat /proc/driver/nvidia/version and
    modinfo ask the running kernel, so under --root they are marked for an instance booted from the image (they
    cannot run here: SIMULATED hardware and module)."""
    no_gpu = checks(tree(tmp_path, "no-gpu"))["gpu-pci"]
    assert no_gpu["status"] == "critical"
    assert [f["argv"] for f in no_gpu["fixes"]] == [[], ["sudo", "lspci", "-d", "10de:"]]
    assert no_gpu["fixes"][1]["runs"] == "booted"
    root = tree(tmp_path, "healthy-p5-h100x8")
    (root / "proc/driver/nvidia/version").write_text("garbled\n")
    module = checks(root)["gpu-kernel-module"]
    assert module["status"] == "warning"
    assert [(f["argv"], f["runs"]) for f in module["fixes"]] == [
        (["sudo", "cat", "/proc/driver/nvidia/version"], "booted"),
        (["sudo", "modinfo", "-F", "version", "nvidia"], "booted")]


# -- the platform, docker and packages checks' remaining prose as fixes (issue 26 item 3) ------------------
def fixture_repo(tmp_path: Path, root: Path, request, *specs) -> None:
    """A real repository (rpmbuild, createrepo_c) of ``specs`` that the image's dnf reads, and the image's own
    dnf.conf, as Amazon Linux has one (without it dnf --installroot reads this machine's; the fixtures are
    unsigned)."""
    from rpmfixtures import build_repo, repo_file

    repo = build_repo(list(specs), tmp_path / "repo", cache=request.config.cache.mkdir("rpmfixtures"))
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/yum.repos.d/fixture.repo").write_text(repo_file({"fixture": repo}))
    (root / "etc/dnf").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=0\n")


def in_rpmdb(tmp_path: Path, root: Path, request, *specs) -> None:
    """``specs`` recorded in the image's rpm database (--justdb: only the database matters to doctor)."""
    from rpmfixtures import build_rpm

    cache = request.config.cache.mkdir("rpmfixtures")
    for spec in specs:
        subprocess.run(["rpm", "-i", "--root", str(root), "--nodeps", "--justdb",
                        str(build_rpm(spec, tmp_path / "rpms", cache=cache))], check=True, capture_output=True,
                       timeout=120)


def cleared(proc: subprocess.CompletedProcess, check_id: str) -> bool:
    """doctor ran (its Nagios line first) and reported no finding of ``check_id``."""
    assert proc.stdout.startswith("GPUPREP "), proc.stdout + proc.stderr
    return check_id not in proc.stdout


@pytest.mark.allow_subp("env")
def test_an_engine_at_docker_host_that_does_not_answer(tmp_path):
    """The hint was "start the dockerd that listens on URL (its -H), or `unset DOCKER_HOST`". Now the start is said
    (how that dockerd was started is its owner's: no command gpuprep can know), and doctor without DOCKER_HOST is
    the command, run here as shown: under --root it leaves the Engine out, so docker-engine's finding is gone."""
    root = tree(tmp_path, "healthy-p5-h100x8")
    env = {**ENV, "DOCKER_HOST": f"unix://{tmp_path}/gone.sock"}
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container"], env=env)
    found = {c["id"]: c for c in json_output(result.stdout)["checks"]}["docker-engine"]
    assert found["status"] == "critical"
    start, without = found["fixes"]
    assert start["argv"] == [] and "gone.sock" in start["why"]
    assert without["argv"] == ["env", "-u", "DOCKER_HOST", "gpuprep", "--root", str(root), "doctor"]
    proc = subprocess.run([*without["argv"], "--no-container"], capture_output=True, text=True, timeout=120, env={
        "PATH": f"{GPUPREP.parent}:/usr/bin:/bin", "DOCKER_HOST": env["DOCKER_HOST"], "COLUMNS": "200"})
    assert cleared(proc, "docker-engine"), proc.stdout


def test_not_root_is_doctor_again_through_sudo(tmp_path):
    """The hint was "run `sudo gpuprep doctor`", without the run's --root. The fix is built for the target; run here
    as root (this suite's user, what sudo makes of the command), platform-root is ok. SIMULATED: the euid of the
    first run (a Host told 1000), so that the finding is made at all."""
    from gpuprep.host import Host
    from gpuprep.options import DoctorOptions
    from gpuprep.platform import detect
    from gpuprep.platform_checks import CHECKS
    from gpuprep.runner.checks import Probes, run_check

    root = tree(tmp_path, "healthy-p5-h100x8")
    host = Host(root, env={}, euid=1000)
    check = next(c for c in CHECKS if c.id == "platform-root")
    found = run_check(check, Probes(host, detect(host), DoctorOptions()))
    assert found.status.value == "warning"
    assert [f.argv for f in found.fixes] == [("sudo", "gpuprep", "--root", str(root), "doctor")]
    proc = subprocess.run([str(GPUPREP), *found.fixes[0].argv[2:], "--no-container"], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert cleared(proc, "platform-root"), proc.stdout


@pytest.mark.allow_subp("cat")
def test_an_unknown_platform_says_what_it_is(tmp_path):
    """The hint was prose with `cat /etc/os-release`, the builder's file under --root. The fix reads the image's,
    run here as shown (it cannot clear the finding: the platform is what it is)."""
    root = tree(tmp_path, "unknown-distro")
    found = checks(root)["platform-os"]
    assert found["status"] == "unknown"
    supported, what = found["fixes"]
    assert supported["argv"] == [] and "Amazon Linux" in supported["why"]
    assert what["argv"] == ["cat", str(root / "etc/os-release")]
    assert run_fix(what).stdout == (root / "etc/os-release").read_text()


def test_packages_not_locked_under_root_is_gpuprep_s_packages_step(tmp_path):
    """The hint was one shell line (`dnf ... install 'dnf-command(versionlock)' && printf ... >> LIST`). Under --root
    the fixes are gpuprep's packages step for the image, its dry run first (no dnf command of the builder's locks the
    image: dnf reads the lock list of the machine it runs on); tests/integration/test_checks_packages.py runs them
    against real repositories and sees the check clear. SIMULATED: the installed packages are seeded."""
    from gpuprep.host import Host
    from gpuprep.options import DoctorOptions
    from gpuprep.packages import checks as package_checks
    from gpuprep.packages.evr import EVR
    from gpuprep.packages.probes import installed_rpm
    from gpuprep.packages.resolve import Package
    from gpuprep.platform import detect
    from gpuprep.runner.checks import Probes, run_check

    root = tree(tmp_path, "healthy-p5-h100x8")
    host = Host(root, env={})
    probes = Probes(host, detect(host), DoctorOptions())
    probes.preset(installed_rpm, [Package("docker", EVR.parse("25.0.6-1.amzn2023.0.2"))])
    found = run_check(next(c for c in package_checks.CHECKS if c.id == "packages-locked"), probes)
    assert found.status.value == "warning", found
    assert [f.argv for f in found.fixes] == [
        ("gpuprep", "--root", str(root), "install", "--only", "packages", "--dry-run"),
        ("gpuprep", "--root", str(root), "install", "--only", "packages")]


@pytest.mark.allow_subp("dnf", "createrepo_c")
def test_dcgm_below_its_floor_is_updated_in_the_image(tmp_path, request):
    """The hint was prose (`dnf -y update ...`, the builder's dnf under --root). The fix updates the image's DCGM
    through dnf --installroot, run here against a real repository offering a STAND-IN datacenter-gpu-manager-4-core
    4.5.3 (a package of that name and version, no code): dcgm-security clears."""
    from rpmfixtures import PkgSpec

    root = tree(tmp_path, "healthy-p5-h100x8")
    in_rpmdb(tmp_path, root, request, PkgSpec("datacenter-gpu-manager-4-core", "4.5.2", "1", epoch=1))
    fixture_repo(tmp_path, root, request, PkgSpec("datacenter-gpu-manager-4-core", "4.5.3", "1", epoch=1))
    found = checks(root)["dcgm-security"]
    assert found["status"] == "warning"
    assert [f["argv"] for f in found["fixes"]] == [
        ["dnf", f"--installroot={root}", "update", "-y", "datacenter-gpu-manager-4-core"]]
    run_fix(found["fixes"][0])
    assert checks(root)["dcgm-security"]["status"] == "ok"


def test_a_held_package_is_unlocked_before_its_update(tmp_path):
    """dcgm-security and distro-advisories lift a versionlock only where the image's lock list holds the package
    (the prose said so for every package, held or not), through the image's own dnf (chroot). Neither runs on a
    tree: it has no dnf, and no cached updateinfo (SIMULATED: the pending advisory is seeded, as the running dnf
    would answer)."""
    from gpuprep.host import Host
    from gpuprep.options import DoctorOptions
    from gpuprep.packages import advisories
    from gpuprep.platform import detect
    from gpuprep.runner.checks import Probes, run_check

    root = tree(tmp_path, "healthy-p5-h100x8")
    (root / "etc/dnf/plugins").mkdir(parents=True)
    (root / "etc/dnf/plugins/versionlock.conf").write_text("[main]\nenabled = 1\n")
    (root / "etc/dnf/plugins/versionlock.list").write_text("docker-0:25.0.6-1.amzn2023.0.2.*\n")

    def advisory_fixes() -> list[tuple[str, ...]]:
        host = Host(root, env={})
        probes = Probes(host, detect(host), DoctorOptions())
        probes.preset(advisories.pending, advisories.Pending([advisories.Advisory(
            "ALAS2023-2026-1234", "Important", ["docker-25.0.8-1.amzn2023.0.5.x86_64",
                                                "runc-1.2.6-1.amzn2023.x86_64"])],
            ["amazonlinux"], "2026-12-07T00:00:00+00:00"))
        return [f.argv for f in run_check(advisories.CHECKS[0], probes).fixes]

    upgrade = ("chroot", str(root), "dnf", "upgrade", "-y", "--advisory=ALAS2023-2026-1234")
    assert advisory_fixes() == [("chroot", str(root), "dnf", "versionlock", "delete", "docker"), upgrade]
    (root / "etc/dnf/plugins/versionlock.list").write_text("")
    assert advisory_fixes() == [upgrade]


@pytest.mark.allow_subp("cp", "chroot", "ldd")
def test_a_config_toml_that_is_not_toml_is_replaced_by_the_toolkits_defaults(tmp_path):
    """The hint was "fix PATH (`nvidia-ctk config` prints the toolkit's own defaults)", and every check of the stack
    repeated it as unknown. Now toolkit-stack alone carries the fixes (the others skip, pointing at it): a copy kept,
    then the image's own nvidia-ctk writing its defaults in place, run here as shown: NVIDIA's real nvidia-ctk
    (../shared/toolkit: a static binary) put in the tree as the toolkit's package would, run through chroot."""
    import shutil

    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    config = root / "etc/nvidia-container-runtime/config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[broken\n")
    ctk = require_toolkit() / "nvidia-ctk"
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(ctk, root / "usr/bin/nvidia-ctk")
    # The C library it links (cgo) and its loader, as every image has them: this machine's, where ldd finds them.
    linked = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", str(ctk)], capture_output=True, text=True,
                                                         check=True, timeout=30).stdout)
    for lib in linked:
        (root / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / lib.lstrip("/"))
    found = checks(root)
    assert found["toolkit-stack"]["status"] == "unknown"
    assert found["toolkit-security"]["status"] == "skipped" and "see toolkit-stack" in found["toolkit-security"][
        "summary"]
    keep, defaults, by_hand = found["toolkit-stack"]["fixes"]
    assert keep["argv"] == ["cp", "-p", str(config), f"{config}.broken"]
    assert defaults["argv"] == ["chroot", str(root), "nvidia-ctk", "config", "default", "--output",
                                "/etc/nvidia-container-runtime/config.toml"]
    assert by_hand["argv"] == []
    run_fix(keep)
    run_fix(defaults)
    assert (config.parent / "config.toml.broken").read_text() == "[broken\n"
    assert checks(root)["toolkit-stack"]["status"] == "ok"
