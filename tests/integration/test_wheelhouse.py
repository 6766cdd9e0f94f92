"""The install path on the floor Python: `make dist`'s wheelhouse, installed offline into a fresh venv of 3.9.

Real: packaging/wheelhouse.py (what `make dist` runs; dependency wheels from the suite's cache, fetched from
the index once), a CPython 3.9 (pyenv's, or the one tests/provision.sh installs), `python3 -m venv`, pip
with `--no-index`, install.sh, and gpuprep's live code path: doctor on this machine, NVML through the real
nvidia-ml-py loading a real shared library with ctypes.
SIMULATED (no GPU here): that library is a stand-in built with gcc from a C stub (tests/fake_nvml.py), and
the GPUs' PCI functions and /proc/driver/nvidia/version are files on tmpfs mounts laid over sysfs and procfs
in a mount namespace of doctor's own (`unshare --mount`), so this machine's view is untouched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import distkit
import fake_nvml
import pytest
from conftest import require, require_root
from contract import json_output
from testbed import DEFAULT_GPUS, DRIVER_VERSION

from gpuprep import version as version_of

REPO = Path(__file__).resolve().parents[2]
# What this checkout builds as (gpuprep/version.py): a tag's X.Y.Z, else X.Y.Z.postN+g<commit>[.dirty].
VERSION = version_of.current_from(REPO)
NAGIOS = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}

# Lays the SIMULATED driver's view over this machine's, inside the namespace only, then runs "$@".
SIM_GPUS_SH = r"""set -eu
mount -t tmpfs -o mode=0755 gpuprep-test /sys/bus/pci/devices
for spec in $GPUPREP_TEST_PCI; do
  d=/sys/bus/pci/devices/$spec
  mkdir "$d"
  echo 0x10de > "$d/vendor"; echo 0x2330 > "$d/device"; echo 0x030200 > "$d/class"
  ln -s ../../../bus/pci/drivers/nvidia "$d/driver"
done
mount -t tmpfs -o mode=0755 gpuprep-test /proc/driver
mkdir /proc/driver/nvidia
echo "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  $GPUPREP_TEST_DRIVER  Release Build" \
  > /proc/driver/nvidia/version
exec "$@"
"""


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    return distkit.build_wheelhouse(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def floor_python() -> str:
    python = distkit.floor_python()
    if python is None:
        pytest.skip(f"needs a CPython {distkit.FLOOR} (pyenv's or python{distkit.FLOOR} on PATH; "
                    "`make provision` as root installs Debian bullseye's)")
    return python


@pytest.fixture(scope="module")
def floor_venv(wheelhouse, floor_python, tmp_path_factory) -> Path:
    """The install lines docs/packaging.md gives, verbatim: a venv, then pip offline from the wheelhouse."""
    venv = tmp_path_factory.mktemp("floor") / "gpuprep"
    subprocess.run([floor_python, "-m", "venv", str(venv)], check=True, timeout=120, capture_output=True)
    proc = subprocess.run([str(venv / "bin/pip"), "install", "--no-index", "--find-links", str(wheelhouse),
                           "gpuprep"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


def test_the_wheelhouse_holds_every_dependency_for_both_platforms(wheelhouse):
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    assert [n for n in names if n.startswith("gpuprep-")] == [f"gpuprep-{VERSION}-py3-none-any.whl"], names
    psutil = [n for n in names if n.startswith("psutil-")]
    assert any("x86_64" in n for n in psutil) and any("aarch64" in n for n in psutil), psutil
    assert not [n for n in names if n.endswith(".tar.gz")], "no sdist: nothing is compiled on an instance"
    lock = (wheelhouse / "requirements.txt").read_text()
    for dist in (f"gpuprep=={VERSION}", "docker==", "psutil==", "distro==", "tenacity==", "typer==", "rich==",
                 "nvidia-ml-py==", "requests==", "pyyaml=="):
        assert f"\n{dist}" in lock, (dist, lock)
    assert (wheelhouse / "PYTHON").read_text().strip() == distkit.FLOOR
    assert (wheelhouse.parent / f"{wheelhouse.name}.tar.gz").is_file()


def test_the_wheel_ships_the_knowledge_tables_and_their_schema(wheelhouse, floor_venv):
    """gpuprep/knowledge/data/*.json and schema/*.json are package data: an installed gpuprep reads them."""
    import zipfile

    names = set(zipfile.ZipFile(next(wheelhouse.glob("gpuprep-*-py3-none-any.whl"))).namelist())
    shipped = {f"gpuprep/knowledge/data/{p.name}" for p in (REPO / "gpuprep/knowledge/data").glob("*.json")}
    assert shipped and shipped <= names and "gpuprep/knowledge/schema/knowledge.schema.json" in names
    proc = subprocess.run([str(floor_venv / "bin/gpuprep"), "--json", "knowledge"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    tables = json_output(proc.stdout)["tables"]
    assert len(tables) == len(shipped) and {t["origin"] for t in tables} == {"shipped"}


def test_what_the_installed_gpuprep_prints_is_valid_against_the_schema_installed_with_it(wheelhouse, floor_venv):
    """gpuprep/schema/output.schema.json is package data: a fleet finds it beside the installed gpuprep, as
    docs/contract.md says, and validates what that gpuprep prints with it."""
    import zipfile

    names = set(zipfile.ZipFile(next(wheelhouse.glob("gpuprep-*-py3-none-any.whl"))).namelist())
    assert "gpuprep/schema/output.schema.json" in names
    where = subprocess.run([str(floor_venv / "bin/python"), "-c", "import gpuprep, os; "
                            "print(os.path.dirname(gpuprep.__file__))"], capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip()
    schema = Path(where) / "schema" / "output.schema.json"
    assert schema.read_bytes() == (REPO / "gpuprep/schema/output.schema.json").read_bytes()
    for argv in (["install", "--list-steps"], ["seal", "--list-steps"], ["doctor", "--list-checks"],
                 ["seal", "--only", "nope"], ["knowledge"]):
        proc = subprocess.run([str(floor_venv / "bin/gpuprep"), "--json", *argv], capture_output=True, text=True,
                              timeout=60)
        json_output(proc.stdout, schema)


def test_the_wheelhouse_takes_its_dependencies_from_the_committed_lock(wheelhouse):
    """Every dependency line of the wheelhouse's requirements.txt is the committed lock's line, hashes and all."""
    committed = {line.split("==")[0]: line for line in (REPO / "packaging/lock/py3.9.txt").read_text().splitlines()
                 if line and not line.startswith("#")}
    shipped = [line for line in (wheelhouse / "requirements.txt").read_text().splitlines()
               if line and not line.startswith("#") and not line.startswith("gpuprep==")]
    assert shipped and all(committed[line.split("==")[0]] == line for line in shipped), shipped
    assert set(committed) - {line.split("==")[0] for line in shipped} == {"pip"}  # pip rides along, unlisted


def test_make_dist_is_byte_for_byte_reproducible(wheelhouse, tmp_path):
    """A second `make dist` of the same commit, later and into another folder, gives the same sha256s: the
    wheel's zip dates, the tar's order, owners and mtimes and the gzip header all come from SOURCE_DATE_EPOCH
    (the last commit's time), not the clock (on main before issue 26 two builds a minute apart differed)."""
    again = distkit.build_wheelhouse(tmp_path)
    digest = {}
    for house in (wheelhouse, again):
        files = [house.parent / f"{house.name}.tar.gz", *sorted(house.iterdir())]
        digest[house] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert digest[wheelhouse] == digest[again]


def test_doctor_runs_live_on_the_floor_python_with_nvml(floor_venv, tmp_path):
    """gpu-nvml on a live host, on 3.9: the path setup.py's old >=3.8 floor broke (issue 16) and --root skips."""
    require_root()
    require("unshare", "gcc")
    python = str(floor_venv / "bin/python")
    assert subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True).stdout.strip() == distkit.FLOOR
    gpuprep = str(floor_venv / "bin/gpuprep")
    assert subprocess.run([gpuprep, "--version"], capture_output=True, text=True).stdout == f"gpuprep {VERSION}\n"
    nvml = fake_nvml.build(tmp_path / "nvml")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": str(nvml.parent),
           "DOCKER_HOST": f"unix://{tmp_path}/no-dockerd.sock",  # this machine's dockerd is not the subject
           "GPUPREP_TEST_PCI": " ".join(g["pci"][-12:].lower() for g in DEFAULT_GPUS),
           "GPUPREP_TEST_DRIVER": DRIVER_VERSION}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SIM_GPUS_SH, "sh",
                           gpuprep, "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, timeout=120, env=env)
    doc = json_output(proc.stdout)
    assert proc.returncode == NAGIOS[doc["status"]], proc.stderr
    crashed = [c for c in doc["checks"] if c["summary"].startswith("check failed")]
    assert not crashed, crashed
    checks = {c["id"]: c for c in doc["checks"]}
    nvml_check = checks["gpu-nvml"]
    assert nvml_check["status"] == "ok", nvml_check
    assert nvml_check["data"]["source"] == "nvml", nvml_check
    assert [g["uuid"] for g in nvml_check["data"]["gpus"]] == [g["uuid"] for g in DEFAULT_GPUS]
    assert nvml_check["data"]["driver_version"] == DRIVER_VERSION
    # The checks that read NVML's answer ran on it too (they compare it with PCI and the module).
    ran = [c for c in doc["checks"] if c["group"] == "gpu" and c["status"] != "skipped"]
    assert len(ran) >= 3, [(c["id"], c["status"], c["summary"]) for c in doc["checks"]]


def test_root_doctor_and_seal_dry_run_on_the_floor_python(floor_venv, tmp_path):
    gpuprep = str(floor_venv / "bin/gpuprep")
    root = tmp_path / "root"
    shutil.copytree(REPO / "tests/fixtures/distros/amzn-2023", root)
    proc = subprocess.run([gpuprep, "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, timeout=120)
    doc = json_output(proc.stdout)
    assert doc["command"] == "doctor" and doc["platform"]["name"] == "Amazon Linux 2023", doc["platform"]
    assert proc.returncode == NAGIOS[doc["status"]]
    assert not any(c["summary"].startswith("check failed") for c in doc["checks"]), doc["checks"]
    proc = subprocess.run([gpuprep, "--root", str(root), "--json", "seal", "--dry-run", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert json_output(proc.stdout)["command"] == "seal", proc.stderr


def test_install_sh_installs_offline_and_links_gpuprep(wheelhouse, floor_python, tmp_path):
    """install.sh as the README's user-data runs it, into a scratch prefix and link."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GPUPREP_PYTHON": floor_python,
           "GPUPREP_PREFIX": str(tmp_path / "opt/gpuprep"), "GPUPREP_LINK": str(tmp_path / "sbin-gpuprep")}
    proc = subprocess.run([str(wheelhouse / "install.sh")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"gpuprep {VERSION}"), proc.stdout
    link = tmp_path / "sbin-gpuprep"
    assert link.is_symlink() and Path(link.readlink()) == tmp_path / "opt/gpuprep/bin/gpuprep"
    assert subprocess.run([str(link), "--version"], capture_output=True, text=True).stdout == f"gpuprep {VERSION}\n"
    # Hash-checked: a wheel that is not the one the wheelhouse recorded is refused.
    tampered = shutil.copytree(wheelhouse, tmp_path / "tampered")
    wheel = next(tampered.glob("distro-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    env["GPUPREP_PREFIX"], env["GPUPREP_LINK"] = str(tmp_path / "opt2"), ""
    proc = subprocess.run([str(tampered / "install.sh")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "hash" in proc.stderr.lower(), proc.stdout + proc.stderr


def test_python_38_is_refused_in_one_line(wheelhouse, tmp_path):
    """3.8 is below the floor: install.sh says so (exit 3) and pip's Requires-Python keeps gpuprep off it."""
    python38 = distkit.find_python("3.8")
    if python38 is None:
        pytest.skip("needs a CPython 3.8 (pyenv's or python3.8 on PATH)")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GPUPREP_PYTHON": python38,
           "GPUPREP_PREFIX": str(tmp_path / "opt38"), "GPUPREP_LINK": ""}
    proc = subprocess.run([str(wheelhouse / "install.sh")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"gpuprep install.sh: gpuprep needs Python 3.9 or newer; {python38} is 3.8 "
                                   "(set GPUPREP_PYTHON to a newer one)")
    assert not (tmp_path / "opt38").exists()
    venv = tmp_path / "venv38"
    subprocess.run([python38, "-m", "venv", str(venv)], check=True, timeout=120, capture_output=True)
    own = next(wheelhouse.glob("gpuprep-*.whl"))
    proc = subprocess.run([str(venv / "bin/pip"), "install", "--no-index", "--no-deps", str(own)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and ">=3.9" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
