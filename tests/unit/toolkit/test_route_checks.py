"""What the Engine makes of the CDI specs, the routes a GPU container takes, nvidia-cdi-refresh (issue 28, items 1-3).

SIMULATED (no GPU or driver here): the host is the ``al2023-ecs-gpu-2026`` tree (real character device nodes, the
toolkit's spec and units as shipped); the Engine's ``docker info`` (its version and CDISpecDirs) is seeded, as the
running Engine would answer it, since the rules tested are version gates of Engines this machine cannot all run.
The stand-in ``nvidia-cdi-hook`` is an executable named as the toolkit's. The checks and the runner are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import probekit
import pytest

from gpuprep.engine import checks as engine_checks
from gpuprep.engine import container_checks
from gpuprep.report import Status
from gpuprep.runner.checks import run_check
from gpuprep.toolkit import checks as toolkit_checks
from gpuprep.toolkit import route_checks

pytestmark = pytest.mark.allow_subp("rpm")
BY_ID = {c.id: c for c in route_checks.CHECKS}
SPEC = "var/run/cdi/nvidia.yaml"
HOOK = {"/usr/bin/nvidia-cdi-hook": "#!/bin/sh\n# STAND-IN for the toolkit's nvidia-cdi-hook\nexit 0\n"}


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the host tree holds real character devices (mknod needs root)")


def tree(tmp_path: Path, files: dict | None = None, **changes) -> Path:
    """The AMI's tree with ``files`` added to its own."""
    needs_root()
    own = probekit.hosttree.load_spec("al2023-ecs-gpu-2026").files
    return probekit.tree(tmp_path, "al2023-ecs-gpu-2026", files={**own, **(files or {})}, **changes)


def probes(root: Path, engine: str, cdi_on: bool = True):
    p = probekit.probes(root, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    p.preset(engine_checks.docker_info, {"ServerVersion": engine,
                                         "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"] if cdi_on else []})
    p.preset(engine_checks.engine_process, None)
    p.preset(toolkit_checks.toolkit_version, "1.19.1-1")
    p.preset(container_checks.host_view, None)
    return p


def spec_v07(root: Path) -> None:
    """The spec as toolkit 1.19 writes it: cdiVersion 0.7.0, device nodes with additionalGids (the video group)."""
    text = (root / SPEC).read_text().replace("cdiVersion: 0.5.0", "cdiVersion: 0.7.0").replace(
        "    - path: /dev/nvidia0\n", "    - path: /dev/nvidia0\n      additionalGids: [39]\n", 1)
    (root / SPEC).write_text(text)


# -- item 2 -------------------------------------------------------------------------------------------------------
def test_cdi_0_7_on_docker_25_is_toolkit_cdi_specs_finding_and_not_said_twice(tmp_path):
    """The critical finding is toolkit-cdi-specs' (issue 24 put it there, from the same knowledge table); this check
    adds what that one does not say: the gids Docker before 29.5 drops."""
    root = tree(tmp_path)
    spec_v07(root)
    specs = run_check({c.id: c for c in toolkit_checks.CHECKS}["toolkit-cdi-specs"], probes(root, "25.0.16"))
    assert specs.status is Status.CRITICAL and "cdiVersion 0.7.0 needs Docker Engine 26.1" in specs.summary, specs
    result = run_check(BY_ID["toolkit-cdi-engine-reads"], probes(root, "25.0.16"))
    assert result.status is Status.WARNING and "additionalGids" in result.summary, result
    assert "26.1" not in result.summary
    assert "no-additional-gids-for-device-nodes" in result.hint


def test_additional_gids_before_docker_29_5_is_a_warning_and_29_5_reads_it(tmp_path):
    root = tree(tmp_path)
    spec_v07(root)
    result = run_check(BY_ID["toolkit-cdi-engine-reads"], probes(root, "28.5.2"))
    assert result.status is Status.WARNING and "additionalGids" in result.summary, result
    assert run_check(BY_ID["toolkit-cdi-engine-reads"], probes(root, "29.5.0")).status is Status.OK


def test_the_amis_spec_on_docker_25_passes(tmp_path):
    result = run_check(BY_ID["toolkit-cdi-engine-reads"], probes(tree(tmp_path), "25.0.16"))
    assert result.status is Status.OK and "cdiVersion 0.5.0" in result.summary, result


def test_a_spec_older_than_the_drivers_module_is_named(tmp_path):
    root = tree(tmp_path, files={"/lib/modules/6.1.158-180.294.amzn2023.x86_64/extra/nvidia.ko.xz": "stand-in"})
    written = time.time() - 3600
    os.utime(root / SPEC, (written, written))  # the spec from an hour before the driver update
    result = run_check(BY_ID["toolkit-cdi-engine-reads"], probes(root, "29.5.0"))
    assert result.status is Status.WARNING, result
    assert "written before the driver's module /lib/modules/6.1.158-180.294.amzn2023.x86_64/extra/nvidia.ko.xz" \
        in result.summary


# -- item 1 -------------------------------------------------------------------------------------------------------
def test_a_stale_spec_breaks_gpus_on_docker_29_2_while_ecs_works(tmp_path):
    root = tree(tmp_path, uvm_major=511, files=HOOK)  # the driver reloaded with another major since the spec
    result = run_check(BY_ID["toolkit-gpu-routes"], probes(root, "29.2.1"))
    assert result.status is Status.WARNING, result
    assert "`docker run --gpus` reads /var/run/cdi/nvidia.yaml, which is stale" in result.summary
    assert "jit-cdi" in result.summary and "the two routes disagree" in result.summary
    assert result.data["routes"]["gpus"].startswith("Docker's CDI")


def test_uuid_names_only_break_gpus_device_0(tmp_path):
    root = tree(tmp_path, files=HOOK)
    text = (root / SPEC).read_text()
    for index in ("0", "1"):
        text = text.replace(f'- name: "{index}"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia{index}\n',
                            "")
    (root / SPEC).write_text(text)
    result = run_check(BY_ID["toolkit-gpu-routes"], probes(root, "29.2.1"))
    assert result.status is Status.WARNING and "--gpus device=0" in result.summary, result
    assert "--device-name-strategy=index" in result.hint


def test_the_routes_agree_on_a_fitting_spec_and_before_29_2(tmp_path):
    root = tree(tmp_path, files=HOOK)
    result = run_check(BY_ID["toolkit-gpu-routes"], probes(root, "29.2.1"))
    assert result.status is Status.OK and "--gpus: Docker's CDI" in result.summary, result
    stale = tree(tmp_path / "b", uvm_major=511, files=HOOK)
    result = run_check(BY_ID["toolkit-gpu-routes"], probes(stale, "28.5.2"))
    assert result.status is Status.OK and "prestart hook" not in result.data["routes"]["device"], result
    assert not result.data["routes"]["gpus"].startswith("Docker's CDI")


# -- item 3 -------------------------------------------------------------------------------------------------------
PERSISTENCED = {"/usr/lib/systemd/system/nvidia-persistenced.service":
                "[Unit]\nDescription=NVIDIA Persistence Daemon\n\n[Service]\nType=forking\n"
                "ExecStart=/usr/bin/nvidia-persistenced --verbose\n"}


@pytest.mark.allow_subp("install")
def test_refresh_not_after_persistenced_warns_and_the_drop_in_fixes_it(tmp_path):
    root = tree(tmp_path, files=PERSISTENCED)
    result = run_check(BY_ID["toolkit-cdi-refresh"], probes(root, "25.0.16"))
    assert result.status is Status.WARNING and "not ordered after nvidia-persistenced" in result.summary, result
    assert [f.runs for f in result.fixes] == ["here"], result.fixes  # under --root: no daemon-reload of the builder
    subprocess.run(result.fixes[0].argv, check=True)
    result = run_check(BY_ID["toolkit-cdi-refresh"], probes(root, "25.0.16"))
    assert result.status is Status.OK, result


def test_refresh_disabled_or_behind_the_driver_warns(tmp_path):
    root = tree(tmp_path, links={})
    result = run_check(BY_ID["toolkit-cdi-refresh"], probes(root, "25.0.16"))
    assert result.status is Status.WARNING and "not enabled" in result.summary, result
    root = tree(tmp_path / "b", files={"/lib/modules/6.1.0/extra/nvidia.ko": "stand-in"})
    written = time.time() - 3600
    os.utime(root / SPEC, (written, written))
    result = run_check(BY_ID["toolkit-cdi-refresh"], probes(root, "25.0.16"))
    assert result.status is Status.WARNING and "older than the driver's module" in result.summary, result


def this_boot(result: str = "success", started: int = 9_000_000, persistenced_up: int = 8_000_000,
              errors: list[str] | None = None) -> dict:
    """``systemctl show`` and ``journalctl -b -p err`` as a booted host answers them (the running system: seeded)."""
    return {route_checks.REFRESH_SERVICE: {"Result": result, "ExecMainStatus": "0" if result == "success" else "1",
                                           "ExecMainStartTimestampMonotonic": str(started)},
            route_checks.PERSISTENCED: {"ActiveState": "active", "ActiveEnterTimestampMonotonic": str(persistenced_up)},
            "errors": errors or []}


@pytest.mark.parametrize("boot, said", [
    (this_boot("exit-code", errors=["nvidia-ctk: failed to initialize NVML: Driver Not Loaded"]),
     "failed this boot (exit-code, exit status 1): nvidia-ctk: failed to initialize NVML"),
    (this_boot(started=0), "has not run this boot"),
    (this_boot(started=5_000_000, persistenced_up=8_000_000), "ran 3.0 s before nvidia-persistenced.service"),
])
def test_what_the_refresh_did_this_boot_is_named(tmp_path, boot, said):
    drop_in = {route_checks.REFRESH_DROP_IN: "[Unit]\nAfter=nvidia-persistenced.service\n"}
    p = probes(tree(tmp_path, files={**PERSISTENCED, **drop_in}), "25.0.16")
    p.preset(route_checks.refresh_ran, boot)
    result = run_check(BY_ID["toolkit-cdi-refresh"], p)
    assert result.status is Status.WARNING and said in result.summary, result
    p = probes(tree(tmp_path / "ok", files={**PERSISTENCED, **drop_in}), "25.0.16")
    p.preset(route_checks.refresh_ran, this_boot())
    assert run_check(BY_ID["toolkit-cdi-refresh"], p).status is Status.OK
