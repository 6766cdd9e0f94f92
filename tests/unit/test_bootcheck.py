"""The boot-check unit's content: one shipped file, the gate line on or off, the program path."""

from __future__ import annotations

from conftest import REPO

from gpuprep.bootcheck import DEFAULT_PROGRAM, GATE_LINE, UNIT_TEMPLATE, render_unit


def _section(text: str, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line
        elif current == name and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_systemd_dir_and_package_data_are_one_file():
    assert (REPO / "systemd/gpuprep-boot-check.service").resolve() == UNIT_TEMPLATE.resolve()


def test_gate_on_orders_and_requires():
    text = render_unit(DEFAULT_PROGRAM, gate=True)
    unit, service, install = (_section(text, s) for s in ("[Unit]", "[Service]", "[Install]"))
    # Fabric manager too: on NVSwitch hosts the check waits for the fabric it trains (issue 25).
    assert unit["After"] == ["docker.service nvidia-persistenced.service nvidia-cdi-refresh.service "
                             "nvidia-fabricmanager.service"]
    assert unit["Wants"] == ["docker.service"]
    assert "Requires" not in unit  # persistenced and fabric manager are optional: ordered after, never required
    assert unit["Before"] == ["ecs.service"]
    assert service["Type"] == ["oneshot"] and service["RemainAfterExit"] == ["yes"]
    assert service["TimeoutStartSec"][0].isdigit()
    assert service["ExecStart"] == [f"{DEFAULT_PROGRAM} doctor --boot $GPUPREP_BOOT_ARGS"]
    assert service["StandardOutput"] == ["journal"]
    assert install == {"WantedBy": ["multi-user.target"], "RequiredBy": ["ecs.service"]}


def test_no_gate_drops_only_required_by():
    on, off = render_unit(DEFAULT_PROGRAM, gate=True), render_unit(DEFAULT_PROGRAM, gate=False)
    assert GATE_LINE not in off.splitlines()
    assert [line for line in on.splitlines() if line != GATE_LINE] == off.splitlines()
    assert _section(off, "[Unit]")["Before"] == ["ecs.service"]


def test_program_path_replaced_once():
    text = render_unit("/opt/gpuprep/bin/python3 -m gpuprep", gate=True)
    want = "/opt/gpuprep/bin/python3 -m gpuprep doctor --boot $GPUPREP_BOOT_ARGS"
    assert _section(text, "[Service]")["ExecStart"] == [want]


def test_image_other_than_default_is_passed_to_the_boot_check():
    text = render_unit(DEFAULT_PROGRAM, gate=True, image="registry.local/cuda:12")
    want = f"{DEFAULT_PROGRAM} doctor --boot --image registry.local/cuda:12 $GPUPREP_BOOT_ARGS"
    assert _section(text, "[Service]")["ExecStart"] == [want]
