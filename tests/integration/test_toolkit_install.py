"""install's toolkit steps on trees laid out like the 2026 AL2023 ECS GPU AMI and a 2024 AMI, inside --root.

Real: the gpuprep CLI as a build pipeline runs it (--root, no Engine), rpm databases in the trees holding fixture
RPMs named like NVIDIA's and Amazon's packages (stand-ins: rpmbuild-made, they install no files and stand in for
the packages' metadata only: nvidia-container-toolkit-base at the AMI's version, docker at its version),
``systemctl --root`` enabling units offline. Simulated: the GPU's device nodes (mknod, real character devices
with the driver's numbers) and the toolkit's files (tests/fixtures/hosts). Engine-driven runs of the same layouts
are in tests/integration/test_engine.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hosttree
from conftest import FIXTURES, REPO, require, require_root
from contract import json_output
from rpmfixtures import PkgSpec, build_rpm


def image(tmp_path: Path, request, name: str, toolkit: str, docker: str, **files) -> Path:
    require("rpmbuild", "rpm")
    require_root()
    root = hosttree.build_named(name, tmp_path / "root")
    for path, text in files.items():
        (root / path.lstrip("/")).write_text(text)
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    rpms = [build_rpm(PkgSpec(n, v, r), cache / "toolkit-install-rpms", cache=cache / "pkgs")
            for n, v, r in (("nvidia-container-toolkit-base", toolkit, "1"), ("docker", docker, "1.amzn2023.0.2"))]
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb",
                    *map(str, rpms)], check=True, capture_output=True, timeout=60)
    return root


def gpuprep(root: Path, *args: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", *args], capture_output=True,
                          text=True, timeout=120, env={**env, "PYTHONPATH": str(REPO)})
    return proc.returncode, json_output(proc.stdout), proc.stderr


def steps(report: dict) -> dict[str, dict]:
    return {s["id"]: s for s in report["steps"]}


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


STEPS = "docker-runtime,dev-char-links,cdi-spec"


def test_2026_ami_sets_only_the_default_keeps_runtimes_d_and_keeps_the_refresh_units(tmp_path, request):
    """runtimes.d defines nvidia, runc is the default, toolkit 1.19.1 (jit-cdi; at the security floor of bulletin
    5850), Docker 25.0.6: daemon.json gets default-runtime alone (Engine 25 validates the merged configuration),
    nothing defines nvidia twice."""
    root = image(tmp_path, request, "al2023-ecs-gpu-2026", "1.19.1", "25.0.6")
    daemon_json = root / "etc/docker/daemon.json"
    code, plan, err = gpuprep(root, "install", "--only", STEPS, "--dry-run")
    assert code == 0, err
    s = steps(plan)
    assert s["docker-runtime"]["status"] == "planned"
    assert '+    "default-runtime": "nvidia"' in s["docker-runtime"]["diff"]
    assert s["dev-char-links"]["status"] == "ok" and "runtime mode jit-cdi" in s["dev-char-links"]["summary"]
    assert s["cdi-spec"]["status"] == "ok" and "refreshed at boot by nvidia-cdi-refresh" in s["cdi-spec"]["summary"]
    stack = s["cdi-spec"]["data"]["stack"]
    assert stack["toolkit"] == "1.19.1-1" and stack["mode"] == "jit-cdi"
    assert [r["route"] for r in stack["registrations"]] == ["runtimes.d"]
    assert daemon_json.read_text() == "{}\n"

    code, done, err = gpuprep(root, "install", "--only", STEPS)
    assert code == 0, err
    assert json.loads(daemon_json.read_text()) == {"default-runtime": "nvidia"}
    code, again, err = gpuprep(root, "install", "--only", STEPS)
    assert code == 0 and again["status"] == "ok", (err, again)
    code, report, err = gpuprep(root, "doctor", "--no-container")
    assert check(report, "docker-runtime-once")["status"] == "ok"
    assert check(report, "toolkit-cdi-specs")["status"] == "ok" and check(report, "toolkit-security")["status"] == "ok"


def test_2026_ami_with_the_refresh_units_disabled_enables_them_offline(tmp_path, request):
    require("systemctl")
    root = image(tmp_path, request, "al2023-ecs-gpu-2026", "1.18.1", "25.0.6")
    for unit in ("nvidia-cdi-refresh.path", "nvidia-cdi-refresh.service"):
        (root / "etc/systemd/system/multi-user.target.wants" / unit).unlink()
    code, plan, err = gpuprep(root, "install", "--only", "cdi-spec", "--dry-run")
    assert code == 0, err
    step = steps(plan)["cdi-spec"]
    assert step["status"] == "planned" and step["commands"] == [
        ["systemctl", f"--root={root.resolve()}", "enable", "nvidia-cdi-refresh.path", "nvidia-cdi-refresh.service"]]
    code, done, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(done)["cdi-spec"]["status"] == "changed", err
    assert (root / "etc/systemd/system/multi-user.target.wants/nvidia-cdi-refresh.service").is_symlink()
    code, again, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(again)["cdi-spec"]["status"] == "ok", err


def test_docker_cdi_sets_features_cdi_keeping_every_other_features_key(tmp_path, request):
    root = image(tmp_path, request, "al2023-ecs-gpu-2026", "1.18.1", "25.0.6",
                 **{"/etc/docker/daemon.json": '{"features": {"containerd-snapshotter": false}}\n'})
    code, done, err = gpuprep(root, "install", "--only", "docker-runtime,cdi-spec", "--docker-cdi")
    assert code == 0, err
    assert json.loads((root / "etc/docker/daemon.json").read_text()) == {
        "features": {"containerd-snapshotter": False, "cdi": True}, "default-runtime": "nvidia"}
    assert "features.cdi" in steps(done)["docker-runtime"]["summary"]
    code, again, err = gpuprep(root, "install", "--only", "docker-runtime,cdi-spec", "--docker-cdi")
    assert code == 0 and again["status"] == "ok", err


def test_docker_cdi_on_an_engine_without_cdi_is_refused(tmp_path, request):
    root = image(tmp_path, request, "al2023-ecs-gpu-2026", "1.18.1", "20.10.25")
    before = (root / "etc/docker/daemon.json").read_bytes()
    code, report, err = gpuprep(root, "install", "--only", "docker-runtime", "--docker-cdi")
    assert code == 1 and "Docker Engine 20.10.25 has no CDI" in err, err
    assert (root / "etc/docker/daemon.json").read_bytes() == before


def test_2024_ami_legacy_mode_gets_the_udev_rule_and_doctor_sees_it(tmp_path, request):
    """Toolkit 1.17.8 in auto mode (legacy before 1.18): the /dev/char links at every boot; the hint of doctor's
    toolkit-dev-char, run, clears it."""
    root = image(tmp_path, request, "al2-ecs-gpu-2024", "1.17.8", "20.10.25")
    code, report, err = gpuprep(root, "doctor", "--no-container")
    finding = check(report, "toolkit-dev-char")
    assert finding["status"] == "warning", finding
    hint = finding["hint"].split("`")[1]
    assert hint == f"gpuprep --root {root.resolve()} install --only dev-char-links"
    code, plan, err = gpuprep(root, "install", "--only", "dev-char-links", "--dry-run")
    assert code == 0 and steps(plan)["dev-char-links"]["status"] == "planned", err
    assert 'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"' in \
        steps(plan)["dev-char-links"]["diff"]
    assert not (root / "etc/udev/rules.d").exists()
    code, done, err = gpuprep(root, *hint.split()[3:])  # the hint, as given: install --only dev-char-links
    assert code == 0 and steps(done)["dev-char-links"]["status"] == "changed", err
    code, again, err = gpuprep(root, "install", "--only", "dev-char-links,cdi-spec")
    assert code == 0 and again["status"] == "ok", (err, again)
    assert "no CDI spec needed" in steps(again)["cdi-spec"]["summary"]
    code, report, err = gpuprep(root, "doctor", "--no-container")
    assert check(report, "toolkit-dev-char")["status"] == "ok"
    # 2024's daemon.json route: nvidia stays defined there once, as the default; nothing to change.
    code, plan, err = gpuprep(root, "install", "--only", "docker-runtime", "--dry-run")
    assert code == 0 and steps(plan)["docker-runtime"]["status"] == "ok", plan


def test_seal_removes_the_build_machines_cdi_spec_and_empties_the_runtime_log(tmp_path, request):
    """A spec generated into /etc/cdi on the build machine names its GPUs by UUID (toolkit issues 1239, 1828);
    --root knows no GPUs of its own, so a UUID-naming spec in the image's /etc/cdi goes; one naming none stays."""
    root = image(tmp_path, request, "al2023-ecs-gpu-2026", "1.18.1", "25.0.6")
    (root / "etc/cdi").mkdir(parents=True)
    (root / "etc/cdi/nvidia.yaml").write_text((root / "var/run/cdi/nvidia.yaml").read_text())
    (root / "etc/cdi/vendor.yaml").write_text("cdiVersion: 0.5.0\nkind: example.com/dev\ndevices:\n- name: x\n"
                                             "  containerEdits: {}\n")
    log = root / "var/log/ecs/nvidia-container-runtime.log"
    code, plan, err = gpuprep(root, "seal", "--only", "toolkit-state", "--dry-run")
    assert code == 0, err
    step = steps(plan)["toolkit-state"]
    assert step["status"] == "planned" and step["data"]["lines"] == [
        "remove /etc/cdi/nvidia.yaml", "truncate /var/log/ecs/nvidia-container-runtime.log"], step
    assert (root / "etc/cdi/nvidia.yaml").exists() and log.stat().st_size > 0
    code, kept, err = gpuprep(root, "seal", "--only", "toolkit-state", "--keep-cdi", "--dry-run")
    assert steps(kept)["toolkit-state"]["data"]["lines"] == ["truncate /var/log/ecs/nvidia-container-runtime.log"]
    code, done, err = gpuprep(root, "seal", "--only", "toolkit-state", "--yes")
    assert code == 0 and steps(done)["toolkit-state"]["status"] == "changed", err
    assert not (root / "etc/cdi/nvidia.yaml").exists() and (root / "etc/cdi/vendor.yaml").exists()
    assert log.exists() and log.stat().st_size == 0
    code, again, err = gpuprep(root, "seal", "--only", "toolkit-state", "--yes")
    assert code == 0 and steps(again)["toolkit-state"]["status"] == "ok", err


# -- gpuprep-cdi-generate.service: the spec at every boot where the toolkit has no nvidia-cdi-refresh ----------
CDI_UNIT = "etc/systemd/system/gpuprep-cdi-generate.service"
CDI_UNIT_WANTS = "etc/systemd/system/multi-user.target.wants/gpuprep-cdi-generate.service"


def test_cdi_generate_unit_passes_systemd_analyze_verify(tmp_path):
    """The shipped unit lints, naming NVIDIA's real nvidia-ctk 1.17.8 (the last toolkit without nvidia-cdi-refresh,
    where gpuprep's unit is the one installed) where tests/provision.sh unpacked it."""
    require("systemd-analyze")
    from conftest import require_toolkit

    from gpuprep.toolkit.boot_unit import UNIT_NAME, render

    ctk = require_toolkit("1.17.8") / "nvidia-ctk"  # verify checks the ExecStart= program exists and is executable
    for name in ("docker.service", "ecs.service", "gpuprep-boot-check.service", "nvidia-persistenced.service",
                 "nvidia-kmod-load.service"):
        (tmp_path / name).write_text(f"[Unit]\nDescription=stub {name}\n[Service]\nExecStart=/bin/true\n")
    unit = tmp_path / UNIT_NAME
    unit.write_text(render(str(ctk)))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if UNIT_NAME in line]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr
    assert f"ExecStart={ctk} cdi generate --output=/var/run/cdi/nvidia.yaml" in unit.read_text()


def test_cdi_mode_on_a_toolkit_without_nvidia_cdi_refresh_gets_gpuprep_s_unit_until_one_ships(tmp_path, request):
    """Toolkit 1.17.8 with mode = "cdi" (a 2024 host moved to CDI): no nvidia-cdi-refresh, so cdi-spec installs and
    enables gpuprep-cdi-generate.service (systemctl --root); a second run changes nothing. When the toolkit that
    ships nvidia-cdi-refresh arrives (1.18.1), the same step removes gpuprep's unit and enables NVIDIA's; and a
    host back in legacy mode with Docker's CDI off keeps neither of gpuprep's."""
    require("systemctl")
    toml = (FIXTURES / "hosts/files/al2-legacy-config.toml").read_text().replace('mode = "auto"', 'mode = "cdi"')
    root = image(tmp_path, request, "al2-ecs-gpu-2024", "1.17.8", "20.10.25",
                 **{"/etc/nvidia-container-runtime/config.toml": toml})
    code, plan, err = gpuprep(root, "install", "--only", "cdi-spec", "--dry-run")
    assert code == 0, err
    step = steps(plan)["cdi-spec"]
    assert step["status"] == "planned", step
    assert "write /etc/systemd/system/gpuprep-cdi-generate.service" in step["summary"]
    assert "+ExecStart=/usr/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml" in step["diff"]
    assert "+Before=docker.service ecs.service gpuprep-boot-check.service" in step["diff"]
    assert step["commands"] == [["systemctl", f"--root={root.resolve()}", "enable", "gpuprep-cdi-generate.service"]]
    assert not (root / CDI_UNIT).exists()

    code, done, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(done)["cdi-spec"]["status"] == "changed", (err, done)
    assert (root / CDI_UNIT).read_text() == (REPO / "systemd/gpuprep-cdi-generate.service").read_text()
    assert (root / CDI_UNIT_WANTS).is_symlink()
    code, again, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(again)["cdi-spec"]["status"] == "ok", (err, again)
    assert "written at every boot by gpuprep-cdi-generate.service" in steps(again)["cdi-spec"]["summary"]

    # The toolkit that ships nvidia-cdi-refresh (its units preset disabled here): NVIDIA's units replace gpuprep's.
    rpm = build_rpm(PkgSpec("nvidia-container-toolkit-base", "1.18.1", "1"),
                    Path(request.config.cache.mkdir("rpmfixtures")) / "toolkit-install-rpms",
                    cache=Path(request.config.cache.mkdir("rpmfixtures")) / "pkgs")
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-U", "--nodeps", "--justdb", str(rpm)],
                   check=True, capture_output=True, timeout=60)
    for unit in ("nvidia-cdi-refresh.path", "nvidia-cdi-refresh.service"):
        (root / "etc/systemd/system" / unit).write_text((FIXTURES / "hosts/files" / unit).read_text())
    code, moved, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0, err
    summary = steps(moved)["cdi-spec"]["summary"]
    assert "enable nvidia-cdi-refresh.path, nvidia-cdi-refresh.service" in summary
    assert "remove gpuprep-cdi-generate.service (nvidia-cdi-refresh writes the spec at boot)" in summary
    assert not (root / CDI_UNIT).exists() and not (root / CDI_UNIT_WANTS).is_symlink()
    assert (root / "etc/systemd/system/multi-user.target.wants/nvidia-cdi-refresh.service").is_symlink()
    code, again, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(again)["cdi-spec"]["status"] == "ok", (err, again)


def test_legacy_mode_removes_gpuprep_s_cdi_unit(tmp_path, request):
    require("systemctl")
    root = image(tmp_path, request, "al2-ecs-gpu-2024", "1.17.8", "20.10.25")
    from gpuprep.toolkit.boot_unit import render

    (root / CDI_UNIT).parent.mkdir(parents=True, exist_ok=True)
    (root / CDI_UNIT).write_text(render())
    (root / CDI_UNIT_WANTS).parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/" + CDI_UNIT, root / CDI_UNIT_WANTS)
    code, plan, err = gpuprep(root, "install", "--only", "cdi-spec", "--dry-run")
    assert code == 0 and steps(plan)["cdi-spec"]["commands"] == [
        ["systemctl", f"--root={root.resolve()}", "disable", "gpuprep-cdi-generate.service"],
        ["rm", "/etc/systemd/system/gpuprep-cdi-generate.service"]], plan
    code, done, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and "remove gpuprep-cdi-generate.service (no CDI spec needed)" in \
        steps(done)["cdi-spec"]["summary"], (err, done)
    assert not (root / CDI_UNIT).exists() and not os.path.lexists(root / CDI_UNIT_WANTS)
    code, again, err = gpuprep(root, "install", "--only", "cdi-spec")
    assert code == 0 and steps(again)["cdi-spec"]["status"] == "ok", (err, again)
