"""gpuprep/toolkit: config.toml's subset reader, the runtime's mode, Docker's CDI, CDI specs against a host tree,
and doctor's toolkit checks with their hints run where the suite can run them.

Simulated (no GPU, driver or NVIDIA packages here): host trees from tests/fixtures/hosts (real character device
nodes made with mknod, so these tests need root), the toolkit's version seeded into doctor's probes (the rpm
database path is exercised in tests/integration/test_toolkit_install.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import hosttree
import pytest
from conftest import FIXTURES, REPO

from gpuprep.doctor import all_checks
from gpuprep.engine import container_checks
from gpuprep.engine.cdi import docker_cdi
from gpuprep.engine.gpu_container import HostGpus
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import Status
from gpuprep.runner.checks import Probes, run_check
from gpuprep.toolkit import cdi
from gpuprep.toolkit import checks as toolkit_checks
from gpuprep.toolkit.config import parse, resolve_mode

pytestmark = pytest.mark.allow_subp("rpm")  # the image's docker package (engine version), asked of an empty tree

HOSTS = FIXTURES / "hosts"
BY_ID = {c.id: c for c in all_checks()}
UUIDS = ["GPU-00000000-0000-0000-0000-000000000000", "GPU-00000000-0000-0000-0000-000000000001"]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the host trees hold real character devices (mknod needs root)")


def tree(tmp_path: Path, name: str, **changes) -> Path:
    needs_root()
    root = tmp_path / "root"
    hosttree.build(root, dataclasses.replace(hosttree.load_spec(name), **changes))
    return root


def probes(root: Path, version: str = "1.18.1-1", uuids: list[str] | None = None) -> Probes:
    host = Host(root, env={})
    p = Probes(host, detect(host), DoctorOptions())
    p.preset(toolkit_checks.toolkit_version, version)
    p.preset(container_checks.host_view, HostGpus(uuids, "nvidia-smi") if uuids is not None else None)
    return p


# -- config.toml ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
@pytest.mark.parametrize("name", ["al2023-ecs-gpu-config.toml", "al2-legacy-config.toml"])
def test_the_subset_reader_agrees_with_tomllib_on_what_it_reads(name):
    import tomllib

    text = (HOSTS / "files" / name).read_text()
    ours, theirs = parse(text), tomllib.loads(text)
    def leaves(doc, path=()):
        for key, value in doc.items():
            if isinstance(value, dict):
                yield from leaves(value, (*path, key))
            elif isinstance(value, (str, bool, int)):  # what the subset reads; the rest it marks unread
                yield (*path, key), value

    want = dict(leaves(theirs))
    for key, value in leaves(ours):
        assert want[key] == value, key
    assert ours["nvidia-container-runtime"]["mode"] == theirs["nvidia-container-runtime"]["mode"]


def test_the_subset_reader_takes_dotted_keys_escapes_and_multiline_arrays():
    doc = parse('nvidia-container-runtime.mode = "cdi"\n[nvidia-container-cli]\n'
                'ldconfig = \'@/sbin/ldconfig\'  # host\nx = [\n  "a",\n  "b",\n]\ndebug = "C:\\\\log\\u0041"\n')
    assert doc["nvidia-container-runtime"]["mode"] == "cdi"
    assert doc["nvidia-container-cli"]["ldconfig"] == "@/sbin/ldconfig"
    assert doc["nvidia-container-cli"]["debug"] == "C:\\logA"
    with pytest.raises(ValueError, match="line 1"):
        parse("[broken\n")


@pytest.mark.parametrize("mode, version, want", [
    ("auto", "1.18.0-1", "jit-cdi"), ("auto", "1.18.0~rc.1-1", "jit-cdi"), ("auto", "1.17.8-1", "legacy"),
    ("auto", None, "unknown"), ("cdi", "1.17.8-1", "cdi"), ("legacy", "1.18.1-1", "legacy")])
def test_the_mode_resolves_as_the_toolkit_resolves_it(mode, version, want):
    """internal/info/auto.go: v1.18.0-rc.1 onward default jit-cdi on NVML platforms; legacy before."""
    assert resolve_mode(mode, version)[0] == want


@pytest.mark.parametrize("config, version, info, want", [
    ({}, "25.0.6", None, False), ({}, "28.2.0", None, True), ({"features": {"cdi": True}}, "26.1.5", None, True),
    ({"features": {"cdi": True}}, "20.10.25", None, False), ({}, None, None, None),
    ({}, "26.1.5", {"CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, True), ({}, "26.1.5", {"CDISpecDirs": []}, False)])
def test_docker_cdi_is_on_as_the_engine_says(config, version, info, want):
    """moby/moby PR 49963 (on by default from 28.2); docker info's CDISpecDirs is empty when CDI is off (Engine 26
    here)."""
    assert docker_cdi(config, version, info)[0] is want


# -- CDI specs ----------------------------------------------------------------------------------------------------
def test_the_amis_spec_fits_the_host(tmp_path):
    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    specs = cdi.find(Host(root), list(cdi.DEFAULT_DIRS))
    findings, winners = cdi.judge(Host(root), specs, driver_version="580.95.05", host_uuids=UUIDS)
    assert findings == [] and winners["nvidia.com/gpu=all"] == "/var/run/cdi/nvidia.yaml"


def test_var_run_cdi_takes_precedence_over_etc_cdi_and_one_dir_twice_is_a_conflict(tmp_path):
    """cncf-tags/container-device-interface pkg/cdi/cache.go: the later directory wins; equal priority conflicts."""
    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    spec = (root / "var/run/cdi/nvidia.yaml").read_text()
    (root / "etc/cdi").mkdir(parents=True)
    (root / "etc/cdi/nvidia.yaml").write_text(spec)
    host = Host(root)
    findings, winners = cdi.judge(host, cdi.find(host, list(cdi.DEFAULT_DIRS)), driver_version="580.95.05",
                                  host_uuids=UUIDS)
    assert findings == [] and winners["nvidia.com/gpu=0"] == "/var/run/cdi/nvidia.yaml"
    (root / "var/run/cdi/copy.yaml").write_text(spec)
    findings, _ = cdi.judge(host, cdi.find(host, list(cdi.DEFAULT_DIRS)), driver_version="580.95.05",
                            host_uuids=UUIDS)
    assert any("conflicting device" in f.problem for f in findings)


def test_a_wrong_major_a_missing_library_and_a_foreign_uuid_are_each_named(tmp_path):
    root = tree(tmp_path, "al2023-ecs-gpu-2026", uvm_major=511)
    host = Host(root)
    findings, _ = cdi.judge(host, cdi.find(host, ["/var/run/cdi"]), driver_version="590.44.01",
                            host_uuids=[UUIDS[0]])
    problems = " | ".join(f.problem for f in findings)
    assert "/dev/nvidia-uvm is 511:0, the spec says 510:0" in problems
    assert "libnvidia-ml.so.580.95.05: driver 580.95.05, the loaded module is 590.44.01" in problems
    assert "does not have: GPU-00000000-0000-0000-0000-000000000001" in problems


def test_a_spec_that_does_not_parse_is_critical_in_cdi_mode(tmp_path):
    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    (root / "var/run/cdi/nvidia.yaml").write_text("devices: [unclosed\n")
    (root / "etc/nvidia-container-runtime/config.toml").write_text('[nvidia-container-runtime]\nmode = "cdi"\n')
    result = run_check(BY_ID["toolkit-cdi-specs"], probes(root, uuids=UUIDS))
    assert result.status is Status.CRITICAL and "does not parse" in result.summary, result
    assert "nvidia-cdi-refresh" in result.hint


# -- the checks' hints, run ---------------------------------------------------------------------------------------
@pytest.mark.allow_subp("sed")
def test_the_ldconfig_hint_makes_it_the_hosts(tmp_path):
    root = tree(tmp_path, "al2-ecs-gpu-2024")
    result = run_check(BY_ID["toolkit-security"], probes(root, version="1.19.1-1"))  # at the floor (bulletin 5850)
    assert result.status is Status.WARNING and "CVE-2024-0136/0137" in result.summary
    command = result.hint.split("`")[1]  # sed -i -E 's|...|...|' FILE, run as a shell would split it
    argv = ["sed", "-i", "-E", command.split("'")[1], command.rsplit(" ", 1)[1]]
    subprocess.run(argv, check=True)
    assert 'ldconfig = "@/sbin/ldconfig"' in (root / "etc/nvidia-container-runtime/config.toml").read_text()
    assert run_check(BY_ID["toolkit-security"], probes(root, version="1.19.1-1")).status is Status.OK


def test_the_foreign_spec_hint_removes_it(tmp_path):
    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    result = run_check(BY_ID["toolkit-cdi-specs"], probes(root, uuids=["GPU-11111111-2222-3333-4444-555555555555"]))
    assert result.status is Status.CRITICAL and "another host" in result.summary
    target = result.hint.split("`rm ")[1].split("`")[0]
    Path(target).unlink()  # what `rm` does
    assert run_check(BY_ID["toolkit-cdi-specs"], probes(root)).status is Status.SKIPPED


def test_dev_char_links_present_live_shape_are_ok(tmp_path):
    root = tree(tmp_path, "al2-ecs-gpu-2024", dev_char=True, files={
        "/etc/udev/rules.d/71-nvidia-dev-char.rules": "# made by the test\n"})
    result = run_check(BY_ID["toolkit-dev-char"], probes(root, version="1.17.8-1"))
    assert result.status is Status.OK, result


def test_cdi_generate_unit_is_one_shipped_file_ordered_before_docker_ecs_and_the_gate():
    from gpuprep.toolkit.boot_unit import UNIT_TEMPLATE, render

    assert (REPO / "systemd/gpuprep-cdi-generate.service").resolve() == \
        UNIT_TEMPLATE.resolve()
    text = render("/usr/local/bin/nvidia-ctk")
    lines = text.splitlines()
    assert "Before=docker.service ecs.service gpuprep-boot-check.service" in lines
    assert "ExecStart=/usr/local/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml" in lines
    assert "ConditionPathExists=/usr/local/bin/nvidia-ctk" in lines and "Type=oneshot" in lines
    assert not any(line.startswith(("Requires=", "RequiredBy=")) for line in lines)  # ordering only


@pytest.mark.parametrize("engine, readable", [("25.0.16", False), ("26.1.5", True)])
def test_a_cdi_0_7_0_spec_needs_engine_26_1_where_dockers_cdi_reads_it(tmp_path, engine, readable):
    """Toolkit 1.19+ writes cdiVersion 0.7.0, which Docker reads from 26.1 (the knowledge table docker-cdi); the ECS
    AMI's Docker is 25.0.16. The Engine is simulated by its version (what `docker info` would say)."""
    from gpuprep.toolkit.stack import detect as detect_stack

    root = tree(tmp_path, "al2023-ecs-gpu-2026")
    spec = root / "var/run/cdi/nvidia.yaml"
    spec.write_text(spec.read_text().replace("cdiVersion: 0.5.0", "cdiVersion: 0.7.0"))
    p = probes(root, uuids=UUIDS)
    p.preset(toolkit_checks.stack, detect_stack(p.host, p.platform, daemon_config={"features": {"cdi": True}},
                                                engine_version=engine, info=None, add_runtimes=None,
                                                toolkit="1.19.1-1"))
    result = run_check(BY_ID["toolkit-cdi-specs"], p)
    if readable:
        assert result.status is Status.OK, result
    else:
        assert result.status is Status.CRITICAL, result
        assert "cdiVersion 0.7.0 needs Docker Engine 26.1 or newer; this Engine is 25.0.16" in result.summary
        assert "update Docker to 26.1 or newer" in result.hint and '"cdi": false' in result.hint
