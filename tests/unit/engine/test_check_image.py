"""engine/check_image.py: which image doctor's container checks use, read from a --root tree.

Real: the files seal and install write (seal.json, the boot unit and a drop-in of systemd's syntax, the unit's
environment file), read through Host. No Engine here (``--root`` without DOCKER_HOST): presence is unknown, so the
choice is the first recorded image; tests/integration/test_doctor_image.py runs the same with a real Engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpuprep.bootcheck import UNIT_TEMPLATE, render_unit
from gpuprep.engine.check_image import BOOT_UNIT, DEFAULT, GIVEN, KEPT, boot_unit_image, image_choice, kept_images
from gpuprep.host import Host
from gpuprep.options import DEFAULT_IMAGE, DoctorOptions
from gpuprep.platform import detect
from gpuprep.runner.checks import Probes

UNIT = "etc/systemd/system/gpuprep-boot-check.service"


def tree(tmp_path: Path, *, unit: str | None = None, drop_in: str | None = None, env: str | None = None,
         kept: list | None = None) -> Host:
    root = tmp_path / "root"
    (root / "etc/gpuprep").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID="amzn"\nVERSION_ID="2023"\nNAME="Amazon Linux"\n')
    if unit is not None:
        (root / UNIT).parent.mkdir(parents=True, exist_ok=True)
        (root / UNIT).write_text(unit)
    if drop_in is not None:
        (root / f"{UNIT}.d").mkdir(parents=True)
        (root / f"{UNIT}.d/10-image.conf").write_text(drop_in)
    if env is not None:
        (root / "etc/gpuprep/boot-check.env").write_text(env)
    if kept is not None:
        (root / "etc/gpuprep/seal.json").write_text(json.dumps({"gpuprep": "0", "kept_images": kept}))
    return Host(root, env={})


def choose(host: Host, image: str | None = None):
    return image_choice(Probes(host, detect(host), DoctorOptions(image=image)))


def test_the_unit_install_writes_names_its_image(tmp_path):
    host = tree(tmp_path, unit=render_unit("/usr/sbin/gpuprep", True, "registry.local/smi:1"))
    assert boot_unit_image(host) == "registry.local/smi:1"
    assert choose(host).image == "registry.local/smi:1" and choose(host).source == BOOT_UNIT


def test_the_shipped_unit_names_none_and_the_default_is_used(tmp_path):
    host = tree(tmp_path, unit=UNIT_TEMPLATE.read_text())
    assert boot_unit_image(host) is None
    assert (choose(host).image, choose(host).source, choose(host).present) == (DEFAULT_IMAGE, DEFAULT, None)


def test_a_drop_in_replaces_exec_start_and_the_env_file_adds_arguments(tmp_path):
    drop_in = "[Service]\nExecStart=\nExecStart=/usr/sbin/gpuprep doctor --boot --image=drop/in:1 $GPUPREP_BOOT_ARGS\n"
    host = tree(tmp_path, unit=render_unit("/usr/sbin/gpuprep", True, "unit/image:1"), drop_in=drop_in)
    assert boot_unit_image(host) == "drop/in:1"
    # GPUPREP_BOOT_ARGS comes after the drop-in's own --image on the command line: the last one wins.
    host = tree(tmp_path / "2", unit=UNIT_TEMPLATE.read_text(), drop_in=drop_in,
                env='GPUPREP_BOOT_ARGS="--prom /var/lib/node_exporter/g.prom --image env/image:2"\n')
    assert boot_unit_image(host) == "env/image:2"


def test_the_images_seal_kept_come_first(tmp_path):
    kept = [{"refs": [], "tags": ["tagged:1"], "id": "sha256:aa"}, {"refs": ["kept:2"], "tags": ["other:2"]},
            {"id": "sha256:bb"}, "garbage"]
    host = tree(tmp_path, unit=render_unit("/usr/sbin/gpuprep", True, "unit/image:1"), kept=kept)
    assert kept_images(host) == ["tagged:1", "kept:2", "sha256:bb"]
    assert (choose(host).image, choose(host).source) == ("tagged:1", KEPT)


def test_image_given_wins(tmp_path):
    host = tree(tmp_path, kept=[{"refs": ["kept:1"]}])
    choice = choose(host, "given:1")
    assert (choice.image, choice.source, choice.fallback) == ("given:1", GIVEN, None)
