"""Symlink traps in ``--root`` trees: nothing outside the root is ever created or changed.

Each case builds an Amazon Linux 2023 root (``tests/fixtures/distros/amzn-2023`` plus the files the steps
read) in ``tmp_path/root``, lays a trap in it and runs the real CLI (``python -m gpuprep --root ROOT``,
no ``DOCKER_HOST``, so the Docker steps skip). Beside the root, ``tmp_path/outside`` holds files that a
wrong resolution would hit: a daemon.json, an ecs.config, a Debian os-release, agent state, log files and
files named like gpuprep's temp files (which a litter sweep through a link would delete).

The traps are the links Packer's amazon-chroot builder meets in real images and the ones a mistake or
a hostile image makes: absolute links (``/etc/os-release -> /usr/lib/os-release``) mean the image's own
path and must be read inside the root; relative links that climb above the image's ``/`` cannot be
meant for the image and must stop the run with exit 2 naming the link.

After every run: ``tmp_path`` outside the root is byte-identical (hashed before and after), and no path
of the build machine that a link names was created or changed (checked, and removed again if a run
created it). The last tests race a directory swapped for a link against ``rootfs.remove`` /
``Host.remove``, as a concurrent process could.

Simulated: the image is a plain directory, not a mounted AMI; ``ecs.service`` is a stand-in unit file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import reliability_kit as kit
from contract import json_output

_figure = kit.module_figure("symlink traps", "held", inner=("swap race",))

INSTALL = ("--only", "docker-runtime,ecs-config,boot-check", "--runtime-path", kit.RUNTIME)
DEBIAN_OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                     'ID=debian\n')


@dataclass
class Trap:
    root: Path
    outside: Path

    def link(self, path: str, target: str) -> None:
        """Make image path ``path`` a link to ``target`` (replacing what is there)."""
        p = self.root / path.lstrip("/")
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)

    def out(self, path: str, image_path: str) -> None:
        """A relative link at ``image_path`` that climbs out of the root to ``outside/path``."""
        parent = (self.root / image_path.lstrip("/")).parent
        self.link(image_path, os.path.relpath(self.outside / path, parent))

    def abs_out(self, path: str, image_path: str) -> None:
        """An absolute link at ``image_path`` naming ``outside/path`` as this machine sees it: inside the image
        it means ROOT/<that path>."""
        self.link(image_path, str(self.outside / path))

    def inside(self, path: str) -> Path:
        """Where image path ``path`` is on this machine."""
        return self.root / path.lstrip("/")


def _outside(d: Path) -> None:
    kit.write(d / "daemon.json", b'{"outside": "must stay as it is"}\n')
    kit.write(d / ".daemon.json.abcdefgh.tmp", b"not gpuprep's: named like its temp files")
    kit.write(d / "ecs.config", b"ECS_CLUSTER=outside\n")
    kit.write(d / ".ecs.config.k3j5h6g7.tmp", b"not gpuprep's either")
    kit.write(d / "seal.json", b'{"outside": true}\n')
    kit.write(d / "unit", b"[Unit]\nDescription=outside\n")
    kit.write(d / "os-release", DEBIAN_OS_RELEASE)
    kit.write(d / "yum/.nvidia.repo.a1b2c3d4.tmp", b"a temp-looking file in a repo dir outside")
    kit.write(d / "yum/outside.repo", b"[outside]\n")
    kit.write(d / "data/agent.db", b"the build machine's own agent state")
    kit.write(d / "data/metadata/x/ecs-container-metadata.json", b"{}")
    kit.write(d / "gpu-info.json", b'{"DriverVersion":"1","GPUIDs":[]}')
    kit.write(d / "log/messages", b"a live log outside: must not be truncated\n")
    kit.write(d / "log/messages.1.gz", b"rotated")
    kit.write(d / "ssh/authorized_keys", b"ssh-ed25519 AAAA outside\n")
    kit.write(d / "machine-id", b"0123456789abcdef0123456789abcdef\n")


# -- the cases --------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    why: str  # how the trap arises
    setup: Callable[[Trap], None]
    command: str = "install"  # or "seal"
    args: tuple[str, ...] = INSTALL
    escapes: str | None = None  # the link an exit 2 must name; None: the run succeeds (unless ``fails``)
    fails: bool = False  # the run must fail (``check`` says how)
    check: Callable[[Trap, kit.Run], list[str]] | None = None
    tree: dict = field(default_factory=dict)


def _nvidia_in(path: str):
    """``path`` (an image path; ``{out}`` is the outside directory's path on this machine) holds the runtime."""
    def check(t: Trap, r: kit.Run) -> list[str]:
        p = t.inside(path.format(out=t.outside))
        if not p.is_file() or p.is_symlink():
            return [f"{path} was not written inside the root ({p})"]
        doc = json.loads(p.read_text())
        problems = []
        if (doc.get("runtimes") or {}).get("nvidia", {}).get("path") != kit.RUNTIME:
            problems.append(f"{p} has no nvidia runtime: {doc}")
        return problems
    return check


def _link_kept(path: str, then=None):
    def check(t: Trap, r: kit.Run) -> list[str]:
        problems = [] if t.inside(path).is_symlink() else [f"{path} is no longer a link"]
        return problems + (then(t, r) if then else [])
    return check


def _platform_is(id_: str, version: str):
    def check(t: Trap, r: kit.Run) -> list[str]:
        try:
            doc = json_output(r.stdout)
        except ValueError:
            return [f"no JSON report on stdout: {r.stdout[:200]!r}"]
        got = (doc["platform"].get("id"), doc["platform"].get("version_id"))
        return [] if got == (id_, version) else [f"platform detected as {got}, expected {(id_, version)}"]
    return check


def _unknown_platform_named(t: Trap, r: kit.Run) -> list[str]:
    problems = []
    if r.code != 3:
        problems.append(f"exit {r.code}, expected 3 (the platform is unknown: a precondition)")
    if "debian" in r.output.lower():
        problems.append("the build machine's Debian os-release was read")
    if "os-release" not in kit.error_line(r):
        problems.append(f"the error does not say os-release is missing: {kit.error_line(r)!r}")
    return problems


def _outside_state_kept(t: Trap, r: kit.Run) -> list[str]:
    return [] if (t.outside / "data/agent.db").is_file() else ["outside agent state removed"]


def _gpu_info_link_gone(t: Trap, r: kit.Run) -> list[str]:
    p = t.inside("/var/lib/ecs/gpu/nvidia-gpu-info.json")
    return [f"{p} (the link) is still there"] if os.path.lexists(p) else []


def _has(path: str, text: bytes):
    def check(t: Trap, r: kit.Run) -> list[str]:
        p = t.inside(path.format(out=t.outside))
        return [] if p.is_file() and text in p.read_bytes() else [f"{p} was not written inside the root"]
    return check


def _seal_json_in(path: str):
    def check(t: Trap, r: kit.Run) -> list[str]:
        p = t.inside(path.format(out=t.outside))
        if not p.is_file():
            return [f"seal.json not written inside the root at {p}"]
        return [] if json.loads(p.read_text()).get("platform", {}).get("id") == "amzn" else [f"{p}: wrong stamp"]
    return check


def _inside_real(t: Trap) -> None:
    kit.write(t.inside("/etc/docker/daemon.real.json"), kit.DAEMON_JSON)
    t.link("/etc/docker/daemon.json", "/etc/docker/daemon.real.json")


def _real_json_check(t: Trap, r: kit.Run) -> list[str]:
    problems = _nvidia_in("/etc/docker/daemon.real.json")(t, r)
    doc = json.loads(t.inside("/etc/docker/daemon.real.json").read_text())
    if doc.get("runtimes", {}).get("custom") != {"path": "/opt/custom/runc-wrapper"} or "log-opts" not in doc:
        problems.append(f"the user's settings in daemon.real.json were lost: {doc}")
    if not t.inside("/etc/docker/daemon.json").is_symlink():
        problems.append("/etc/docker/daemon.json is no longer the link")
    if not list(t.inside("/etc/docker").glob("daemon.real.json.gpuprep-*")):
        problems.append("no backup of daemon.real.json beside it")
    return problems


def _rel_inside(t: Trap) -> None:
    kit.write(t.inside("/srv/docker/daemon.json"), kit.DAEMON_JSON)
    t.link("/etc/docker/daemon.json", "../../srv/docker/daemon.json")


def _chain(t: Trap) -> None:
    t.link("/etc/docker/daemon.json", "/srv/conf/daemon.json")
    t.out("", "/srv/conf")


def _os_release_abs(t: Trap) -> None:
    kit.write(t.inside("/usr/lib/os-release"), (kit.AL2023 / "etc/os-release").read_bytes())
    t.link("/etc/os-release", "/usr/lib/os-release")


def _os_release_dangling(t: Trap) -> None:
    t.link("/etc/os-release", "/usr/lib/os-release")  # and no /usr/lib/os-release in the image


def _deep_traps(t: Trap) -> None:
    t.abs_out("log", "/var/log")
    t.abs_out("ssh", "/home/ec2-user/.ssh")
    t.abs_out("machine-id", "/etc/machine-id")
    t.abs_out("data", "/var/lib/cloud")


def _deep_rel_traps(t: Trap) -> None:
    t.out("ssh", "/home/ec2-user/.ssh")  # walked only through real directories: not followed
    t.out("machine-id", "/etc/machine-id")  # a link, not a regular file: not truncated
    kit.write(t.inside("/var/log/messages"), b"inside log\n")


CASES = [
    Case("daemon-json-abs-outside", "an image whose daemon.json is a link made on the build machine with its "
         "absolute path (ln -s $PWD/daemon.json): inside the image it names ROOT/<that path>",
         lambda t: t.abs_out("daemon.json", "/etc/docker/daemon.json"),
         check=_link_kept("/etc/docker/daemon.json", _nvidia_in("{out}/daemon.json"))),
    Case("daemon-json-rel-climbs-out", "a relative link with one ../ too many (or a hostile image)",
         lambda t: t.out("daemon.json", "/etc/docker/daemon.json"), escapes="/etc/docker/daemon.json"),
    Case("daemon-json-abs-dotdot", "an absolute link with .. above / (/../../x): .. never leaves the image's /",
         lambda t: t.link("/etc/docker/daemon.json", "/../../../../gpuprep-reliability-outside/daemon.json"),
         check=_nvidia_in("/gpuprep-reliability-outside/daemon.json")),
    Case("daemon-json-abs-inside", "configuration management keeps the real file beside the link "
         "(daemon.json -> /etc/docker/daemon.real.json)", _inside_real, check=_real_json_check),
    Case("daemon-json-rel-inside", "a relative link that stays inside the image (../../srv/docker/daemon.json)",
         _rel_inside, check=_link_kept("/etc/docker/daemon.json", _nvidia_in("/srv/docker/daemon.json"))),
    Case("daemon-json-chain-climbs-out", "an absolute link into a directory that is itself a relative link "
         "climbing out", _chain, escapes="/srv/conf"),
    Case("docker-dir-abs-outside", "/etc/docker linked to a volume by its build-machine path",
         lambda t: t.abs_out("", "/etc/docker"), check=_nvidia_in("{out}/daemon.json")),
    Case("docker-dir-rel-climbs-out", "/etc/docker -> ../../outside; the outside dir holds files named like "
         "gpuprep's temp files, which a litter sweep through the link would delete",
         lambda t: t.out("", "/etc/docker"), escapes="/etc/docker"),
    Case("ecs-config-abs-outside", "ecs.config linked by its build-machine path",
         lambda t: t.abs_out("ecs.config", "/etc/ecs/ecs.config"),
         check=_has("{out}/ecs.config", b"ECS_ENABLE_GPU_SUPPORT=true")),
    Case("ecs-config-rel-climbs-out", "ecs.config -> ../../../outside/ecs.config",
         lambda t: t.out("ecs.config", "/etc/ecs/ecs.config"), escapes="/etc/ecs/ecs.config"),
    Case("ecs-dir-rel-climbs-out", "/etc/ecs -> ../../outside",
         lambda t: t.out("", "/etc/ecs"), escapes="/etc/ecs"),
    Case("ecs-dir-abs-outside", "/etc/ecs linked by its build-machine path", lambda t: t.abs_out("", "/etc/ecs"),
         check=_has("{out}/ecs.config", b"ECS_ENABLE_GPU_SUPPORT=true")),
    Case("boot-unit-rel-climbs-out", "the unit file (gpuprep.bootcheck.UNIT_PATH) as a link climbing out",
         lambda t: t.out("unit", "/etc/systemd/system/gpuprep-boot-check.service"),
         escapes="/etc/systemd/system/gpuprep-boot-check.service"),
    Case("boot-unit-abs-outside", "the unit file linked by its build-machine path (a unit kept in a repo checkout)",
         lambda t: t.abs_out("unit", "/etc/systemd/system/gpuprep-boot-check.service"),
         check=_has("{out}/unit", b"doctor --boot")),
    Case("yum-repos-rel-climbs-out", "/etc/yum.repos.d -> ../../outside/yum holding temp-looking files: the "
         "start-of-run litter sweep must not follow it", lambda t: t.out("yum", "/etc/yum.repos.d")),
    Case("yum-repos-abs-outside", "/etc/yum.repos.d linked by its build-machine path",
         lambda t: t.abs_out("yum", "/etc/yum.repos.d")),
    Case("os-release-abs-inside", "every systemd image: /etc/os-release -> /usr/lib/os-release (absolute); this "
         "machine's /usr/lib/os-release is Debian's", _os_release_abs, args=("--json", *INSTALL),
         check=_platform_is("amzn", "2023")),
    Case("os-release-abs-dangling", "/etc/os-release -> /usr/lib/os-release with the image's target missing: "
         "the build machine's Debian file must not answer", _os_release_dangling, fails=True,
         check=_unknown_platform_named),
    Case("os-release-rel-climbs-out", "/etc/os-release -> ../../outside/os-release (a Debian one)",
         lambda t: t.out("os-release", "/etc/os-release"), escapes="/etc/os-release"),
    Case("lock-dir-rel-climbs-out", "/run/lock -> ../../outside (the run lock's folder)",
         lambda t: t.out("", "/run/lock"), escapes="/run/lock"),
    Case("gpuprep-dir-rel-climbs-out", "/etc/gpuprep -> ../../outside: seal's stamp",
         lambda t: t.out("", "/etc/gpuprep"), command="seal", args=(), escapes="/etc/gpuprep"),
    Case("gpuprep-dir-abs-outside", "/etc/gpuprep linked by its build-machine path",
         lambda t: t.abs_out("", "/etc/gpuprep"), command="seal", args=(),
         check=_seal_json_in("{out}/seal.json")),
    Case("seal-json-rel-climbs-out", "/etc/gpuprep/seal.json -> ../../../outside/seal.json",
         lambda t: t.out("seal.json", "/etc/gpuprep/seal.json"), command="seal", args=(),
         escapes="/etc/gpuprep/seal.json"),
    Case("ecs-data-rel-climbs-out", "/var/lib/ecs/data -> ../../../../outside/data: seal's ecs-state",
         lambda t: t.out("data", "/var/lib/ecs/data"), command="seal", args=(), escapes="/var/lib/ecs/data",
         tree={"agent_state": True}),
    Case("ecs-data-abs-outside", "/var/lib/ecs/data moved to a volume, linked by its build-machine path",
         lambda t: t.abs_out("data", "/var/lib/ecs/data"), command="seal", args=(), check=_outside_state_kept,
         tree={"agent_state": True}),
    Case("gpu-info-abs-outside", "nvidia-gpu-info.json as a link to a file outside: the link goes, not its target",
         lambda t: t.abs_out("gpu-info.json", "/var/lib/ecs/gpu/nvidia-gpu-info.json"), command="seal", args=(),
         check=_gpu_info_link_gone),
    Case("gpu-info-rel-climbs-out", "nvidia-gpu-info.json as a relative link climbing out: removed as a link",
         lambda t: t.out("gpu-info.json", "/var/lib/ecs/gpu/nvidia-gpu-info.json"), command="seal", args=(),
         check=_gpu_info_link_gone),
    Case("deep-abs-outside", "seal --deep where /var/log, ~/.ssh, /etc/machine-id and /var/lib/cloud are links "
         "by build-machine paths", _deep_traps, command="seal", args=("--deep",)),
    Case("deep-rel-climbs-out", "seal --deep with ~/.ssh and /etc/machine-id as links climbing out",
         _deep_rel_traps, command="seal", args=("--deep",)),
    Case("deep-log-rel-climbs-out", "seal --deep with /var/log -> ../../outside/log",
         lambda t: t.out("log", "/var/log"), command="seal", args=("--deep",), escapes="/var/log"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_trap(case: Case, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _outside(outside)
    kit.al2023(root, gpuprep_inside=True, **case.tree)
    trap = Trap(root, outside)
    case.setup(trap)
    guard = kit.guard_host(kit.absolute_link_targets(root, beside=tmp_path))
    before = kit.snapshot(tmp_path, skip=[root])

    r = kit.install(root, *case.args) if case.command == "install" else kit.seal(root, *case.args)

    problems = kit.host_changes(guard)
    changed = kit.diff(before, kit.snapshot(tmp_path, skip=[root]))
    if changed:
        problems.append("changed outside the root: " + "; ".join(changed[:8]))
    if r.code is None:
        problems.append("hung (killed after 30 s)")
    elif case.escapes:
        if r.code != 2:
            problems.append(f"exit {r.code}, expected 2 (a relative link climbing out of the root)")
        if case.escapes not in kit.error_line(r):
            problems.append(f"the error does not name {case.escapes}: {kit.error_line(r)!r}")
        problems += kit.error_problems(r)
    elif case.fails:
        problems += kit.error_problems(r)
    else:
        if r.code != 0:
            problems.append(f"exit {r.code}, expected 0")
        problems += kit.error_problems(r, want_error=False)
    if case.check is not None and r.code is not None:
        problems += case.check(trap, r)
    leftover = kit.temp_files(root)
    if leftover:
        problems.append(f"temp files left in the root: {leftover}")
    assert not problems, f"{case.id} ({case.why}):\n  " + "\n  ".join(problems) + f"\n{r}"


# -- a directory swapped for a link between resolving and removing ----------------------------
def _state_tree(root: Path, outside: Path, n: int = 1) -> None:
    for i in range(n):
        kit.write(root / f"var/lib/ecs/data/metadata/x/f{i}", b"inside: may go")
        kit.write(outside / f"x/f{i}", b"outside: must stay")


def test_open_dir_refuses_a_component_swapped_for_a_link(tmp_path):
    """rootfs.resolve, then the swap, then rootfs.open_dir: the walk with O_NOFOLLOW raises TreeChanged
    instead of opening the outside directory the link names."""
    from gpuprep import rootfs

    root, outside = tmp_path / "root", tmp_path / "outside"
    _state_tree(root, outside)
    real = rootfs.resolve(str(root), "/var/lib/ecs/data/metadata/x/f0")
    parts = rootfs.relative(str(root), real)
    meta = root / "var/lib/ecs/data/metadata"
    os.rename(meta, root / "var/lib/ecs/data/metadata.away")
    os.symlink(outside, meta)  # a link to a directory holding x/f0 too
    with pytest.raises(rootfs.TreeChanged) as exc:
        rootfs.open_dir(str(root), parts[:-1])
    assert "/var/lib/ecs/data/metadata" in exc.value.message
    assert (outside / "x/f0").read_bytes() == b"outside: must stay"


@pytest.mark.parametrize("via", ["rootfs.remove", "Host.remove"])
def test_remove_after_a_swap_stops(tmp_path, via):
    """seal found /var/lib/ecs/data/metadata/x/f0 (a real directory then); before its removal the directory
    became a link to one outside holding x/f0 too: the removal stops (TreeChanged), nothing outside goes."""
    from gpuprep import rootfs
    from gpuprep.host import Host

    root, outside = tmp_path / "root", tmp_path / "outside"
    _state_tree(root, outside)
    meta = root / "var/lib/ecs/data/metadata"
    shutil.rmtree(meta)
    os.symlink(outside, meta)
    path, base = "/var/lib/ecs/data/metadata/x/f0", "/var/lib/ecs/data"
    with pytest.raises(rootfs.TreeChanged):
        if via == "Host.remove":
            Host(root).remove(path, base=base)
        else:
            rootfs.remove(str(root.resolve()), path, base=base)
    with pytest.raises(rootfs.TreeChanged):  # a whole tree under the swapped directory: the same
        Host(root).remove("/var/lib/ecs/data/metadata/x", base=base)
    assert (outside / "x/f0").read_bytes() == b"outside: must stay"


SWAPPER = """
import ctypes, os, random, sys, time
meta, link, outside, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.symlink(outside, link)
end = time.monotonic() + seconds
print("swapping", flush=True)

def hold():  # stay in each state for a random few microseconds, so both states are seen
    t = time.perf_counter() + random.random() * 40e-6
    while time.perf_counter() < t:
        pass

while time.monotonic() < end:
    # renameat2(RENAME_EXCHANGE): the real directory and a link to the outside one trade places at once
    if libc.renameat2(AT_FDCWD, meta.encode(), AT_FDCWD, link.encode(), RENAME_EXCHANGE) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
    hold()
"""



def test_removals_racing_a_swapper_never_leave_the_root(tmp_path):
    """A second process swaps /var/lib/ecs/data/metadata for a link to an outside directory and back
    (``renameat2(RENAME_EXCHANGE)``, so the path is always one or the other) as fast as it can, while
    Host.remove removes 2000 files below it one by one (what seal's ecs-state does with each planned
    item), each tried again until it is gone. Each attempt either removes the file inside or stops with
    TreeChanged, never says "nothing there" (the file is there all along: seal would report it removed
    and leave it in the image); no outside file is ever removed, and every inside one is in the end.
    Real processes, a real race: the figure says how often each outcome happened."""
    from gpuprep import rootfs
    from gpuprep.host import Host

    root, outside = tmp_path / "root", tmp_path / "outside"
    n = 2000
    _state_tree(root, outside, n)
    meta = root / "var/lib/ecs/data/metadata"
    host = Host(root)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(meta), str(meta) + ".link", str(outside), "60"],
                               stdout=subprocess.PIPE, text=True)
    # "not found" would be a lie: the file is inside until it is removed
    outcomes = {"removed": 0, "not found": 0, "TreeChanged": 0}
    other: list[str] = []
    assert swapper.stdout.readline().strip() == "swapping"
    deadline = time.monotonic() + 30
    try:
        for i in range(n):
            while time.monotonic() < deadline:
                try:
                    if host.remove(f"/var/lib/ecs/data/metadata/x/f{i}", base="/var/lib/ecs/data"):
                        outcomes["removed"] += 1
                        break
                    outcomes["not found"] += 1
                except rootfs.TreeChanged:
                    outcomes["TreeChanged"] += 1
                except Exception as exc:  # any other outcome is reported, not hidden
                    other.append(f"f{i}: {type(exc).__name__}: {exc}")
                    break
    finally:
        swapper.kill()
        swapper.wait()
    if os.path.islink(meta):  # the swapper was stopped with the link in place: put the directory back
        os.rename(str(meta) + ".link", str(meta) + ".dir")
        os.unlink(meta)
        os.rename(str(meta) + ".dir", meta)
    lost = [f"x/f{i}" for i in range(n) if not (outside / f"x/f{i}").is_file()]
    kept = [f"x/f{i}" for i in range(n) if (meta / f"x/f{i}").exists()]
    erred = {o.split(":", 1)[0] for o in other}
    clean = [i for i in range(n) if f"x/f{i}" not in lost and f"x/f{i}" not in kept and f"f{i}" not in erred]
    kit.figure("swap race", len(clean), n, [f"outside {p} removed" for p in lost[:5]] + other[:5],
               noun=f"files removed inside with the outside one kept (attempts: {outcomes})")
    assert not lost, f"{len(lost)} files outside the root removed: {lost[:5]}"
    assert not other, f"removals ended in unexpected errors: {other[:5]}"
    assert not kept, f"{len(kept)} files inside were never removed (within 30 s): {kept[:5]}"
    assert swapper.returncode == -9, f"the swapper stopped by itself: {swapper.stdout.read()}"
    assert outcomes["TreeChanged"] > 0, f"the race was not hit: {outcomes}"
    assert outcomes["not found"] == 0, f"a removal said 'nothing there' for a file that was: {outcomes}"
