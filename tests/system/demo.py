"""`make demo`: try gpuprep without a GPU instance.

Builds (or reuses) the simulated instance of tests/system (a booted Debian tree that looks like
Amazon Linux 2023, with a real Docker Engine, real dnf and fixture repositories; the GPU, driver,
NVIDIA runtime and ECS agent are simulated), runs the user-data flow on it, launches a new instance
from the sealed image, and prints what a user would see. Needs root (systemd-nspawn).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

NEEDS = ("systemd-nspawn", "debootstrap", "nsenter", "rpmbuild", "createrepo_c", "busybox")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def show(inst, argv: list[str], *, timeout: float = 600) -> int:
    print(f"[root@instance ~]# {' '.join(argv)}", flush=True)
    proc = inst.run(argv, check=False, timeout=timeout)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print(out, flush=True)
    if proc.returncode:
        print(f"(exit {proc.returncode})", flush=True)
    return proc.returncode


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it boots a container with systemd-nspawn)", file=sys.stderr)
        return 3
    missing = [c for c in NEEDS if shutil.which(c) is None]
    if missing:
        print(f"demo: missing {', '.join(missing)}: run `make provision` as root", file=sys.stderr)
        return 3

    import distkit
    import fixture_repo
    import image
    from sim import IMAGE, Instance

    from gpuprep.bootcheck import UNIT_NAME

    started = time.monotonic()
    cached = (image.cache_root() / f"tree-{image.recipe_key()}" / ".built").exists()
    say("the simulated instance: " + ("reusing the cached tree" if cached else
                                      "building it once (debootstrap, Docker, dnf; a minute or two)"))
    tree = image.base_tree()
    with tempfile.TemporaryDirectory(prefix="gpuprep-demo-repos-") as d:
        repos = fixture_repo.build(Path(d), cache=image.cache_root() / "rpms")
        print(f"tree {tree} ({time.monotonic() - started:.0f}s)")
        say("make dist: the wheelhouse the user-data installs (dependency wheels cached after the first run)")
        house = distkit.build_wheelhouse(Path(d) / "dist")
        print(f"{house}.tar.gz ({len(list(house.glob('*.whl')))} wheels)")
        inst = Instance(tree, repos, wheelhouse=house.parent / f"{house.name}.tar.gz", name="gpuprep-demo")
        try:
            return _flow(inst, IMAGE, UNIT_NAME, fixture_repo, started)
        finally:
            inst.close()


def _flow(inst, image_ref: str, unit: str, fr, started: float) -> int:
    inst.prepare()
    inst.first_boot()
    say(f"booted an 'Amazon Linux 2023' GPU instance ({inst.instance_id}; 2 simulated H100s, Docker "
        f"{fr.ENGINE_VERSION}); user-data runs:")
    from sim import readme_user_data

    readme, _ = readme_user_data()
    print("\n".join(f"[user-data] {line}" for line in readme if not line.startswith("gpuprep ")), flush=True)
    print("(README.md's lines; S3 is simulated: the tarball is read from /run)", flush=True)
    proc = inst.run_user_data(inst.user_data(gpuprep=False), check=False)
    print((proc.stdout + proc.stderr).rstrip(), flush=True)
    if proc.returncode:
        print(f"(exit {proc.returncode})", flush=True)
        return 1
    rc = show(inst, ["gpuprep", "install", "--repo-file", fr.NVIDIA_REPO_FILE, "--image", image_ref])
    if rc:
        return rc
    say("the builder tries the agent once, then seals the image")
    show(inst, ["systemctl", "start", "ecs.service"])
    inst.wait_agent_registered()
    show(inst, ["ls", "/var/lib/ecs/data"])
    rc = show(inst, ["gpuprep", "seal", "--yes", "--keep-image", image_ref])
    if rc:
        return rc

    inst.launch_from_image()
    say(f"a new instance launched from the image ({inst.instance_id}): the boot check ran before ECS")
    show(inst, ["systemctl", "status", "--no-pager", "--lines=0", unit])
    show(inst, ["journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat"])
    show(inst, ["systemctl", "is-active", "ecs.service"])
    inst.wait_agent_registered()
    show(inst, ["journalctl", "-b", "-u", "ecs.service", "--no-pager", "-o", "cat"])
    say("the admin's view")
    rc = show(inst, ["gpuprep", "doctor"])  # as the README has it: the image seal kept is the one doctor proves in
    say(f"done in {time.monotonic() - started:.0f}s (doctor exit {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
