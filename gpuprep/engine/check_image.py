"""Which image doctor's container checks run nvidia-smi (and the CUDA proof) in.

The image the host was built and sealed with comes first: an air-gapped host built by the README's offline line
(`gpuprep install --image IMAGE`, `gpuprep seal --keep-image IMAGE`) has that image and no registry, and the
default image on ECR Public would be a pull that cannot work there (issue 26). In order:

1. ``--image`` when the user gave it;
2. the images seal kept (``/etc/gpuprep/seal.json``'s ``kept_images``, in the order seal recorded them);
3. the boot unit's ``--image`` (``gpuprep-boot-check.service``, its drop-ins and ``GPUPREP_BOOT_ARGS``), which
   install writes when its gpu-check ran another image than the default;
4. the default image.

Without ``--image`` the first of 2-4 present in the Engine is used, so nothing is pulled where one is there; where
none is, the first is pulled (gpu-container names the pull). With ``--image`` that image is used, and the first
local one of 2-4 is its ``fallback``: when it cannot be pulled, the route is still proven with the local one.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gpuprep.host import Host
from gpuprep.options import DEFAULT_IMAGE
from gpuprep.runner.checks import Probes, probe

GIVEN = "--image"
KEPT = "kept by seal (seal.json)"
BOOT_UNIT = "the boot unit's --image"
DEFAULT = "the default image"
BOOT_ENV = "/etc/gpuprep/boot-check.env"
PRESENT_TIMEOUT = 10.0  # an image lookup is a read of the Engine's store: milliseconds, unless the Engine is stuck


@dataclass(frozen=True)
class ImageChoice:
    image: str  # the image the checks use
    source: str  # where it came from: GIVEN, KEPT, BOOT_UNIT or DEFAULT
    present: bool | None  # in the Engine now; None where the Engine was not asked (down, or none with --root)
    fallback: str | None = None  # a recorded image present locally, where ``image`` is absent

    @property
    def local(self) -> str | None:
        """The image a check that never pulls can run: ``image`` when present, else the local fallback."""
        return self.image if self.present else self.fallback

    def as_data(self) -> dict[str, object]:
        return {"image": self.image, "source": self.source, "present": self.present, "fallback": self.fallback}


def kept_images(host: Host) -> list[str]:
    """The images seal kept, each by the reference it was kept by (else a tag, else its id)."""
    from gpuprep.seal_record import read_seal

    doc = read_seal(host) or {}
    refs: list[str] = []
    for row in doc.get("kept_images") or []:
        if not isinstance(row, dict):
            continue
        names = [n for key in ("refs", "tags") for n in (row.get(key) or []) if isinstance(n, str) and n]
        ref = names[0] if names else row.get("id")
        if isinstance(ref, str) and ref and ref not in refs:
            refs.append(ref)
    return refs


def boot_unit_image(host: Host) -> str | None:
    """The ``--image`` the boot unit runs ``doctor --boot`` with: its ExecStart= (a drop-in's replaces the unit's,
    as systemd reads them: the unit, then ``UNIT.d/*.conf`` in name order), with ``$GPUPREP_BOOT_ARGS`` taken from
    the unit's environment file; the last ``--image`` wins, as on the command line."""
    from gpuprep.bootcheck import UNIT_PATH

    texts = [host.read_text(UNIT_PATH)]
    drop_ins = host.path(f"{UNIT_PATH}.d")
    if drop_ins.is_dir():
        texts += [host.read_text(f"{UNIT_PATH}.d/{p.name}") for p in sorted(drop_ins.glob("*.conf"))]
    exec_start = ""
    for text in texts:
        for line in (text or "").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "ExecStart":
                exec_start = value.strip()  # an empty ExecStart= in a drop-in resets the list
    if not exec_start:
        return None
    extra = _env_value(host.read_text(BOOT_ENV) or "", "GPUPREP_BOOT_ARGS")
    try:
        argv = shlex.split(exec_start.replace("$GPUPREP_BOOT_ARGS", extra).replace("${GPUPREP_BOOT_ARGS}", extra))
    except ValueError:
        return None
    image = None
    for i, word in enumerate(argv):
        if word == "--image" and i + 1 < len(argv):
            image = argv[i + 1]
        elif word.startswith("--image="):
            image = word.split("=", 1)[1]
    return image or None


def _env_value(text: str, name: str) -> str:
    """``name``'s value in a systemd EnvironmentFile (``NAME=value``, optionally quoted)."""
    value = ""
    for line in text.splitlines():
        key, sep, rest = line.strip().partition("=")
        if sep and key.strip() == name:
            rest = rest.strip()
            value = rest[1:-1] if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "'\"" else rest
    return value


def recorded(host: Host) -> list[tuple[str, str]]:
    """(image, source) for 2-4 of the module's order, each image once."""
    found: list[tuple[str, str]] = [(ref, KEPT) for ref in kept_images(host)]
    boot = boot_unit_image(host)
    if boot:
        found.append((boot, BOOT_UNIT))
    found.append((DEFAULT_IMAGE, DEFAULT))
    unique: dict[str, str] = {}
    for ref, source in found:
        unique.setdefault(ref, source)  # the first source that names an image is where it comes from
    return list(unique.items())


def _present(host: Host, ref: str, timeout: float = PRESENT_TIMEOUT) -> bool | None:
    """Whether the Engine has ``ref`` (``GET /images/REF/json``, as ``docker image inspect``); None when it cannot be
    asked (down, or no Engine with --root)."""
    from urllib.parse import quote

    if host.docker_url is None:
        return None
    try:
        # The name stays readable in the path: moby's router matches /images/{name:.*}/json, slashes and all.
        status = host.engine_get(f"/images/{quote(ref, safe='/:@')}/json", timeout).status
    except OSError:
        return None
    return True if status == 200 else False if status == 404 else None


def choose(host: Host, given: str | None, timeout: float = PRESENT_TIMEOUT) -> ImageChoice:
    """The image of the module's order for ``--image`` ``given`` (or None), and whether it is here (each lookup
    bounded by ``timeout``)."""
    candidates = recorded(host)
    if given:
        present = _present(host, given, timeout)
        fallback = None
        if present is False:
            fallback = next((ref for ref, _ in candidates if ref != given and _present(host, ref, timeout)), None)
        return ImageChoice(given, GIVEN, present, fallback)
    states = [(ref, source, _present(host, ref, timeout)) for ref, source in candidates]
    here = next(((ref, source, present) for ref, source, present in states if present), None)
    ref, source, present = here or states[0]
    return ImageChoice(ref, source, present)


@probe
def image_choice(p: Probes) -> ImageChoice:
    """``choose`` for this run's ``--image``; asked once per run by every container check."""
    return choose(p.host, p.options.image)
