"""Fake host trees for ``gpuprep --root``: the GPU host this machine is not.

A tree holds what gpuprep reads of a GPU host's pseudo filesystems, as plain files: sysfs PCI
functions (``vendor``, ``device``, ``class`` and a ``driver`` link), ``/dev/nvidia*`` nodes (regular
files: gpuprep only lists them), ``/proc/driver/nvidia/version`` and ``/proc/modules``, the driver's
``libnvidia-ml.so.<version>`` with its ``.so.1`` link, ``/etc/os-release`` from
``tests/fixtures/distros``, and for an EC2 host its DMI vendor (the instance type itself comes from the metadata
stand-in, ``tests/imds_standin.py``). It simulates the GPU and driver, which these machines lack (docs/testbed.md 9).

Host descriptions live in ``tests/fixtures/hosts/*.json`` (data, not binaries); ``build_named`` turns
one into a tree. ``python tests/hosttree.py NAME DIR`` builds one by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOSTS = FIXTURES / "hosts"
DISTROS = FIXTURES / "distros"

# PCI device ids as `lspci -nn` shows them on the EC2 instance types named.
DEVICE_IDS = {
    "H200": "0x2335",  # p5e (docs/testbed.md 7: the accelerator machine)
    "H100": "0x2330",  # p5: H100 SXM5 80GB
    "A100": "0x20b0",  # p4d: A100 SXM4 40GB
    "A10G": "0x2237",  # g5
    "T4": "0x1eb8",  # g4dn
    "V100": "0x1db1",  # p3: V100 SXM2 16GB
}

MODULE_TEXT = {
    "open": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  "
    "(dvs-builder@U16-I2-C04-37-1)  Tue Sep 16 21:03:56 UTC 2025\nGCC version:  gcc version 11.5.0 (GCC) \n",
    "proprietary": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Sun May 12 19:39:15 UTC 2024\n"
    "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC) \n",
}


@dataclass
class PciSpec:
    bus_id: str
    vendor: str = "0x10de"
    device: str = "0x2330"
    klass: str = "0x030200"
    driver: str | None = "nvidia"


@dataclass
class HostSpec:
    distro: str = "amzn-2023"
    gpus: list[PciSpec] = field(default_factory=list)
    other_pci: list[PciSpec] = field(default_factory=list)  # NVSwitch, audio, ENA: must not count
    nodes: int | None = None  # /dev/nvidiaN count; None: one per GPU
    module: str | None = "580.95.05"  # kernel module version; None: not loaded
    flavour: str = "open"
    userland: str | None = "580.95.05"  # libnvidia-ml.so.1 -> libnvidia-ml.so.<userland>; None: absent
    stale_userland: list[str] = field(default_factory=list)  # leftover libnvidia-ml.so.<v> files
    lib_dir: str = "/usr/lib64"
    sysfs: bool = True
    proc: bool = True
    dev: bool = True
    # Real character devices for /dev/nvidia* (mknod: needs root), with the driver's numbers: nvidiaN 195:N,
    # nvidiactl 195:255, nvidia-uvm(-tools) the dynamic major uvm_major:0/1. Regular files otherwise.
    char_nodes: bool = False
    uvm_major: int = 510
    dev_char: bool = False  # /dev/char/MAJ:MIN links to each node, as nvidia-ctk create-dev-char-symlinks makes
    # The EC2 type the host is: the tree's DMI says "Amazon EC2" (as a /sys bound in from an instance shows),
    # and a test serves this type from the metadata stand-in (tests/imds_standin.py). None: not EC2.
    instance_type: str | None = None
    # Other files of the host: host path -> text ("#!" files are made executable), or a JSON value written as
    # JSON (seal.json, gpu-metrics.json).
    files: dict = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # host path -> link target
    # EFA STAND-INS: that many PCI functions 1d0f:efa1 (the id EFA devices of p5 show), the efa and ib_uverbs
    # modules in /proc/modules and /dev/infiniband/uverbsN nodes (regular files), as an EFA instance has them.
    efa: int = 0


def gpus(model: str, bus_ids: list[str], driver: str | None = "nvidia") -> list[PciSpec]:
    return [PciSpec(b, device=DEVICE_IDS[model], driver=driver) for b in bus_ids]


def _write(root: Path, host_path: str, text: str) -> Path:
    p = root / host_path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def build(root: Path, spec: HostSpec) -> Path:
    """Lay out ``spec`` under ``root`` (created) and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if spec.distro:
        _write(root, "/etc/os-release", (DISTROS / spec.distro / "etc" / "os-release").read_text())
    if spec.sysfs:
        devices = root / "sys/bus/pci/devices"
        devices.mkdir(parents=True, exist_ok=True)
        efa = [PciSpec(f"0000:{0xa0 + i // 4:02x}:00.{i % 4}", vendor="0x1d0f", device="0xefa1", klass="0x020000",
                       driver="efa") for i in range(spec.efa)]
        for f in [*spec.gpus, *spec.other_pci, *efa]:
            d = devices / f.bus_id
            d.mkdir()
            for name, value in (("vendor", f.vendor), ("device", f.device), ("class", f.klass)):
                (d / name).write_text(value + "\n")
            if f.driver:
                (root / "sys/bus/pci/drivers" / f.driver).mkdir(parents=True, exist_ok=True)
                os.symlink(f"../../drivers/{f.driver}", d / "driver")
        if spec.module:
            (root / "sys/module/nvidia").mkdir(parents=True, exist_ok=True)
        if spec.instance_type:
            _write(root, "/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    if spec.dev:
        _write(root, "/dev/null", "")
        n = len(spec.gpus) if spec.nodes is None else spec.nodes
        nodes = {f"nvidia{i}": (195, i) for i in range(n)}
        if n and spec.module:
            nodes.update({"nvidiactl": (195, 255), "nvidia-uvm": (spec.uvm_major, 0)})
            if spec.char_nodes:
                nodes["nvidia-uvm-tools"] = (spec.uvm_major, 1)
        for i in range(spec.efa):
            _write(root, f"/dev/infiniband/uverbs{i}", "")
        for name, (major, minor) in nodes.items():
            if spec.char_nodes:
                os.mknod(root / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            else:
                _write(root, f"/dev/{name}", "")
            if spec.dev_char:
                (root / "dev/char").mkdir(exist_ok=True)
                os.symlink(f"../{name}", root / "dev/char" / f"{major}:{minor}")
    if spec.proc:
        modules = "ext4 1044480 1 - Live 0x0000000000000000\n"
        if spec.module:
            modules = ("nvidia_uvm 1777664 0 - Live 0x0000000000000000\n"
                       "nvidia 56496128 1 nvidia_uvm, Live 0x0000000000000000\n") + modules
            _write(root, "/proc/driver/nvidia/version", MODULE_TEXT[spec.flavour].format(v=spec.module))
        if spec.efa:
            modules = ("efa 143360 0 - Live 0x0000000000000000\n"
                       "ib_uverbs 200704 1 efa, Live 0x0000000000000000\n") + modules
        _write(root, "/proc/modules", modules)
    lib = root / spec.lib_dir.lstrip("/")
    for v in [*([spec.userland] if spec.userland else []), *spec.stale_userland]:
        _write(root, f"{spec.lib_dir}/libnvidia-ml.so.{v}", "")
    if spec.userland:
        os.symlink(f"libnvidia-ml.so.{spec.userland}", lib / "libnvidia-ml.so.1")
    for path, content in spec.files.items():
        written = _write(root, path, content if isinstance(content, str) else json.dumps(content, indent=2) + "\n")
        if isinstance(content, str) and content.startswith("#!"):
            written.chmod(0o755)
    for path, target in spec.links.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / path.lstrip("/"))
    return root


def load_spec(name: str) -> HostSpec:
    """``tests/fixtures/hosts/NAME.json`` -> HostSpec (``"gpus": {"model": "H100", "bus_ids": [...]}``)."""
    raw = json.loads((HOSTS / f"{name}.json").read_text())
    raw.pop("comment", None)
    gpu_block = raw.pop("gpus", None)
    for key, path in raw.pop("files_from", {}).items():  # text kept beside the description (a CDI spec, a unit)
        raw.setdefault("files", {})[key] = (HOSTS / path).read_text()
    spec = HostSpec(**{k: v for k, v in raw.items() if k != "other_pci"})
    if gpu_block:
        spec.gpus = gpus(gpu_block["model"], gpu_block["bus_ids"], gpu_block.get("driver", "nvidia"))
    spec.other_pci = [PciSpec(**p) for p in raw.get("other_pci", [])]
    return spec


def build_named(name: str, root: Path) -> Path:
    return build(root, load_spec(name))


def doctor_textfile(name: str, workdir: Path) -> str:
    """The Prometheus textfile `gpuprep --root TREE doctor --no-container --prom FILE` writes for host ``name``."""
    import subprocess

    root = build_named(name, workdir / name)
    prom = workdir / "gpuprep.prom"
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "doctor", "--no-container",
                           "--prom", str(prom)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1], env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode in (0, 1, 2, 3) and prom.is_file(), proc.stderr
    return prom.read_text()


def host_names() -> list[str]:
    return sorted(p.stem for p in HOSTS.glob("*.json"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} NAME DIR   (NAME one of: {', '.join(host_names())})")
    target = Path(sys.argv[2])
    if target.exists():
        shutil.rmtree(target)
    print(build_named(sys.argv[1], target))
