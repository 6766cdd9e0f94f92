"""gpuprep reads the config.toml NVIDIA's real nvidia-ctk writes (toolkit/config.py), for every toolkit build here.

Real: NVIDIA's nvidia-ctk 1.17.8, 1.18.0, 1.19.1 and 1.20.0 (tests/provision.sh unpacks them, docs/testbed.md 12):
`nvidia-ctk config default` (the file the toolkit's package installs) and `nvidia-ctk config --in-place --set KEY=V`
(how NVIDIA's guide changes the mode and the ldconfig mitigation). Nothing simulated.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, require_toolkit

from gpuprep.host import Host
from gpuprep.toolkit.config import CONFIG_TOML, read

pytestmark = pytest.mark.allow_subp("nvidia-ctk")
VERSIONS = ("1.17.8", "1.18.0", "1.19.1", "1.20.0")


def nvidia_ctk(version: str, *args: str) -> None:
    proc = subprocess.run([str(require_toolkit(version) / "nvidia-ctk"), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def default_config(tmp_path: Path, version: str) -> Path:
    config = tmp_path / CONFIG_TOML.lstrip("/")
    config.parent.mkdir(parents=True)
    nvidia_ctk(version, "config", "default", f"--output={config}")
    return config


@pytest.mark.parametrize("version", VERSIONS)
def test_the_default_config_reads_as_auto_with_the_ldconfig_mitigation(tmp_path, version):
    default_config(tmp_path, version)
    config = read(Host(tmp_path))
    assert (config.exists, config.mode, config.mode_written) == (True, "auto", True)
    assert config.ldconfig == "@/sbin/ldconfig"  # the CVE-2024-0136/0137 mitigation, on by default since 1.17.1
    assert config.debug_log is None  # commented out in the default


@pytest.mark.parametrize("version", VERSIONS)
def test_what_nvidia_ctk_config_set_writes_is_what_gpuprep_reads(tmp_path, version):
    path = default_config(tmp_path, version)
    nvidia_ctk(version, "config", f"--config-file={path}", "--in-place", "--set", "nvidia-container-runtime.mode=cdi",
               "--set", "nvidia-container-cli.ldconfig=/sbin/ldconfig",
               "--set", "nvidia-container-runtime.debug=/var/log/nvidia-runtime-debug.log")
    config = read(Host(tmp_path))
    assert (config.mode, config.mode_written) == ("cdi", True)
    assert config.ldconfig == "/sbin/ldconfig"  # the image's ldconfig: what toolkit-security warns about
    # (Not the default path, /var/log/nvidia-container-runtime.log: nvidia-ctk 1.17.8 and 1.18.0 write a value equal
    # to its commented default as that comment, so debug stays off; 1.20.0 writes it. Seen here.)
    assert config.debug_log == "/var/log/nvidia-runtime-debug.log"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_runtimes_own_spec_dirs_are_where_gpuprep_looks_for_its_specs_in_cdi_mode(tmp_path, version):
    """The runtime in cdi mode reads the spec-dirs of its config.toml, not Docker's (Docker's CDI is off here, Engine
    20.10): a spec there is found, and one in Docker's default dirs is not what the runtime reads."""
    from gpuprep.platform import detect as detect_platform
    from gpuprep.toolkit.stack import detect

    path = default_config(tmp_path, version)
    assert read(Host(tmp_path)).spec_dirs == ["/etc/cdi", "/var/run/cdi"]  # written out by `config default`
    nvidia_ctk(version, "config", f"--config-file={path}", "--in-place", "--set", "nvidia-container-runtime.mode=cdi",
               "--set", "nvidia-container-runtime.modes.cdi.spec-dirs=/etc/nvidia-cdi:/run/nvidia-cdi")
    host = Host(tmp_path)
    assert read(host).spec_dirs == ["/etc/nvidia-cdi", "/run/nvidia-cdi"]
    (tmp_path / "etc/os-release").write_text((FIXTURES / "distros/amzn-2023/etc/os-release").read_text())
    for where in ("etc/nvidia-cdi", "var/run/cdi"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "nvidia.yaml").write_text((FIXTURES / "hosts/files/nvidia-cdi-2gpu.yaml").read_text())
    stack = detect(host, detect_platform(host), daemon_config={}, engine_version="20.10.24", toolkit=f"{version}-1")
    assert (stack.mode, stack.docker_cdi) == ("cdi", False)
    assert stack.spec_dirs == ["/etc/nvidia-cdi", "/run/nvidia-cdi"]
    assert [s.path for s in stack.specs] == ["/etc/nvidia-cdi/nvidia.yaml"]
