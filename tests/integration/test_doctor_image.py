"""doctor runs its container checks in the image the host was built and sealed with, and a registry it cannot reach
is one warning, not UNKNOWN (issue 26).

The measured case: a host built by the README's offline line (`gpuprep install --image LOCAL`, then `gpuprep seal
--keep-image LOCAL`), then a plain `gpuprep doctor`, pulled public.ecr.aws/... three times and answered
`GPUPREP UNKNOWN`, exit 3, with docker-py's `500 Server Error for http+docker://...` in what it printed.

Real: test_doctor_live.py's healthy host (dockerd 20.10 of the test's own reading the --root tree's daemon.json,
NVIDIA's real nvidia-container-runtime 1.20.0 as the default runtime in cdi mode, runc, containerd, rpm-installed
packages), the gpuprep CLI as a user runs it for install's boot-check step, seal (through the Engine) and doctor.
SIMULATED, deliberately: no registry can be reached. dockerd's HTTPS_PROXY is tests/testbed.py's
``UnreachableRegistries``, which answers every CONNECT 502 and counts them, so each pull attempt is seen;
``TinyRegistry`` on 127.0.0.1 (never proxied) stands in for a registry that can be reached. Also SIMULATED (no GPU
here): the GPUs, their nodes and nvidia-smi, as in test_doctor_live.py. The image's own gpuprep, which the boot unit
names, is a stand-in file: --root never runs it (the step only needs it to exist, as at boot).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract import json_output
from test_doctor_live import LiveHost, build_live_host, gpuprep_argv
from testbed import TinyRegistry, UnreachableRegistries

from gpuprep.options import DEFAULT_IMAGE

LOCAL = "tiny:latest"  # the local image build_live_host imports (no registry has it)
RAW_DOCKER_PY = "Server Error for http+docker"


def gpuprep(host: LiveHost, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*gpuprep_argv(), "--root", str(host.root), *args], capture_output=True, text=True,
                          timeout=300, env=host.env)


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Iterator[tuple[LiveHost, UnreachableRegistries]]:
    """The healthy host, its dockerd unable to reach any registry, built and sealed by the README's offline line."""
    from conftest import require, require_root, require_toolkit

    require_root()
    require_toolkit()
    require("rpmbuild", "createrepo_c", "rpm", "systemctl", "dockerd", "runc", "containerd", "busybox")
    cache = Path(tmp_path_factory.getbasetemp().parent / "rpmfixtures-doctor-image")
    proxy = UnreachableRegistries().start()
    saved = {k: os.environ.get(k) for k in proxy.env}
    os.environ.update(proxy.env)  # dockerd's environment only: it is started with os.environ
    try:
        host = build_live_host(tmp_path_factory.mktemp("offline"), cache)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        # The image's gpuprep, where the wheelhouse's install.sh links it (a stand-in: --root never runs it).
        program = host.root / "usr/sbin/gpuprep"
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n# STAND-IN for the image's installed gpuprep (never run by these tests)\n")
        program.chmod(0o755)
        install = gpuprep(host, "install", "--only", "boot-check", "--image", LOCAL)
        assert install.returncode == 0, install.stdout + install.stderr
        seal = gpuprep(host, "seal", "--yes", "--keep-image", LOCAL)
        assert seal.returncode == 0, seal.stdout + seal.stderr
        assert proxy.asked == []  # building touched no registry
        yield host, proxy
    finally:
        host.dockerd.cleanup()
        proxy.stop()


def container_check(report: dict) -> dict:
    return next(c for c in report["checks"] if c["id"] == "gpu-container")


def test_plain_doctor_on_the_sealed_offline_host_uses_the_kept_image_and_pulls_nothing(offline):
    """The measured case. Before: three CONNECTs to public.ecr.aws, GPUPREP UNKNOWN, exit 3."""
    host, proxy = offline
    seal = json.loads((host.root / "etc/gpuprep/seal.json").read_text())
    assert [r["refs"] for r in seal["kept_images"]] == [[LOCAL]]
    before = len(proxy.asked)
    text = gpuprep(host, "doctor")
    assert proxy.asked[before:] == [], proxy.asked  # not one attempt to reach a registry
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.startswith("GPUPREP OK"), text.stdout
    assert "pulling" not in text.stderr and RAW_DOCKER_PY not in text.stdout + text.stderr
    as_json = gpuprep(host, "--json", "doctor")
    check = container_check(json_output(as_json.stdout))
    assert check["status"] == "ok" and check["data"]["image"] == LOCAL, check
    assert check["data"]["image_choice"]["source"] == "kept by seal (seal.json)"
    assert check["data"]["pull_seconds"] == 0 and proxy.asked[before:] == []


def test_without_the_seal_record_the_boot_units_image_is_used(offline):
    """An installed host not (yet) sealed: the boot unit install wrote runs `doctor --boot --image LOCAL`."""
    host, proxy = offline
    unit = (host.root / "etc/systemd/system/gpuprep-boot-check.service").read_text()
    assert f"doctor --boot --image {LOCAL}" in unit
    seal = host.root / "etc/gpuprep/seal.json"
    kept = seal.read_text()
    seal.unlink()
    try:
        before = len(proxy.asked)
        done = gpuprep(host, "--json", "doctor")
    finally:
        seal.write_text(kept)
    check = container_check(json_output(done.stdout))
    assert done.returncode == 0 and check["status"] == "ok", (check, done.stderr)
    assert check["data"]["image"] == LOCAL and check["data"]["image_choice"]["source"] == "the boot unit's --image"
    assert proxy.asked[before:] == []


def test_an_unreachable_registry_is_one_warning_when_a_local_image_proves_the_route(offline):
    """`--image` an image that is not here, its registry unreachable: the kept local image proves the route, and the
    failed pull is one warning line with its fix (exit 1), not UNKNOWN (exit 3); docker-py's raw text never shows."""
    host, proxy = offline
    before = len(proxy.asked)
    done = gpuprep(host, "doctor", "--image", DEFAULT_IMAGE)
    assert proxy.asked[before:] and all("public.ecr.aws:443" in a for a in proxy.asked[before:])  # it did try
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("GPUPREP WARNING - gpu-container"), done.stdout
    assert RAW_DOCKER_PY not in done.stdout + done.stderr, done.stderr
    assert f"pulling {DEFAULT_IMAGE}" in done.stderr  # the pull it tried is named
    [line] = [x for x in done.stdout.splitlines() if "gpu-container" in x and "[WARN]" in x]
    assert f"proven with the local {LOCAL}" in line and "cannot be pulled" in line, line
    assert f"gpuprep --root {host.root} doctor --image {LOCAL}" in done.stdout or \
        f"gpuprep doctor --image {LOCAL}" in done.stdout, done.stdout
    # The fix, run as shown: the finding clears.
    fixed = gpuprep(host, "doctor", "--image", LOCAL)
    assert fixed.returncode == 0, fixed.stdout


def test_a_pull_doctor_makes_is_named_in_the_finding(offline):
    """An image not here whose registry can be reached (a TinyRegistry on 127.0.0.1): doctor pulls it, and says so
    in the check's finding, not only in a log line."""
    host, proxy = offline
    with TinyRegistry(name="pulled") as registry:
        done = gpuprep(host, "--json", "doctor", "--image", registry.image)
        check = container_check(json_output(done.stdout))
        assert registry.pulls >= 1
    assert done.returncode == 0 and check["status"] == "ok", check
    assert f"pulled {registry.image}" in check["summary"], check["summary"]
    assert f"pulling {registry.image}" in done.stderr
    assert check["data"]["pull_seconds"] > 0


def test_the_boot_check_runs_the_container_check_in_the_kept_image(offline):
    """`doctor --boot` pulls nothing: before, without `--image` it looked for the default image, found none and
    skipped the container check on every sealed host whose boot unit named no image."""
    host, proxy = offline
    before = len(proxy.asked)
    done = gpuprep(host, "--json", "doctor", "--boot")
    check = container_check(json_output(done.stdout))
    assert done.returncode == 0 and check["status"] == "ok", check
    assert check["data"]["image"] == LOCAL and proxy.asked[before:] == []
