"""doctor's toolkit checks (issue 15, items 1-3): the stack as found, the security floor and ldconfig, the
/dev/char links legacy mode needs, and every CDI spec against this host.

The stack is probed once per run (``stack``) from what the docker checks already read (daemon.json, ``docker
info``, dockerd's command line); each check decides from it.
"""

from __future__ import annotations

from gpuprep import fixes
from gpuprep.engine.probes import daemon_json_path
from gpuprep.errors import BadInput
from gpuprep.packages import security
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe
from gpuprep.toolkit import cdi
from gpuprep.toolkit.config import CONFIG_TOML
from gpuprep.toolkit.config import read as read_config
from gpuprep.toolkit.dev_char import DEV_CHAR_RULE, nvidia_nodes
from gpuprep.toolkit.stack import Stack, detect


def dev_char_fixes(probes: Probes, now: bool) -> list[fixes.Fix]:
    """The /dev/char links: made now by NVIDIA's tool where ``now`` (the live host), and at every boot by gpuprep's
    udev rule (dev-char-links, as Bottlerocket ships) where install runs here."""
    host, p = probes.host, probes.platform
    found = [fixes.Fix("make the links now", fixes.as_user(host, ["nvidia-ctk", "system", "create-dev-char-symlinks",
                                                                  "--create-all"]))] if now else []
    rule = fixes.gpuprep(host, p, "make them at every boot (a udev rule, as Bottlerocket ships)", "install",
                         "--only", "dev-char-links")
    by_hand = fixes.edit_by_hand(str(host.path(DEV_CHAR_RULE)), "a udev rule that runs `nvidia-ctk system "
                                 "create-dev-char-symlinks --create-all` as NVIDIA's nodes appear")
    return [*found, rule or by_hand]


@probe
def toolkit_version(p: Probes) -> str | None:
    from gpuprep.toolkit.stack import toolkit_version as read

    return read(p.host, p.platform)


class ConfigNotToml(NotApplicable):
    """config.toml is not TOML: toolkit-stack's finding, with its fixes; every other check of the stack is skipped,
    pointing at it, instead of repeating it (as the Engine's checks point at docker-engine)."""

    def __init__(self, error: BadInput) -> None:
        super().__init__(f"{CONFIG_TOML} is not TOML (see toolkit-stack)")
        self.error = error


def config_fixes(probes: Probes) -> list[fixes.Fix]:
    """A config.toml the toolkit cannot parse: a copy kept, the toolkit's own defaults written in its place by the
    target's nvidia-ctk (`nvidia-ctk config default`, toolkit 1.14 and later), the settings carried over by hand."""
    host = probes.host
    path = str(host.path(CONFIG_TOML))
    return [fixes.Fix("keep a copy of it", fixes.as_user(host, ["cp", "-p", path, f"{path}.broken"])),
            fixes.in_image(host, "write the toolkit's own defaults in its place",
                           ["nvidia-ctk", "config", "default", "--output", CONFIG_TOML]),
            fixes.edit_by_hand(path, f"carry your settings over from {path}.broken")]


@probe
def stack(p: Probes) -> Stack:
    from gpuprep.engine.daemon_config import image_engine_version
    from gpuprep.engine.probes import daemon_json, docker_info, engine_process

    try:
        read_config(p.host)
    except BadInput as exc:
        raise ConfigNotToml(exc) from None
    try:
        _, config = daemon_json(p)
    except Exception:  # docker-daemon-json says what is wrong with it
        config = {}
    info = None
    if p.host.docker_url is not None:
        try:
            info = docker_info(p)
        except Exception:  # docker-engine says the Engine is down
            info = None
    try:
        proc = engine_process(p)
    except Exception:  # the process table is not readable: no flags known
        proc = None
    version = str((info or {}).get("ServerVersion") or "") or image_engine_version(p.host)
    return detect(p.host, p.platform, daemon_config=config, engine_version=version, info=info,
                  add_runtimes=proc.add_runtimes if proc else None, toolkit=toolkit_version(p))


def check_stack(probes: Probes) -> Verdict:
    try:
        s = stack(probes)
    except ConfigNotToml as exc:
        return Verdict(Status.UNKNOWN, exc.error.message, data={"path": CONFIG_TOML}, fixes=config_fixes(probes))
    if s.toolkit is None and not s.registrations and not s.specs:
        raise NotApplicable("no NVIDIA container toolkit installed and no nvidia runtime registered")
    return Verdict(Status.OK, s.summary(), data=s.as_dict())


def check_security(probes: Probes) -> Verdict:
    s = stack(probes)
    if s.toolkit is None:
        raise NotApplicable("nvidia-container-toolkit is not installed")
    found = security.advisories_for(s.toolkit)
    data = {"toolkit": s.toolkit, "floor": security.floor(), "advisories": [a.as_dict() for a in found],
            "cves": security.cve_list(found), "ldconfig": s.config.ldconfig}
    if found:
        why = f"install {security.floor()} or newer"
        update = fixes.gpuprep(probes.host, probes.platform, f"{why}, replacing the versionlock that holds this one",
                               "install", "--only", "repositories,packages")
        return Verdict(Status.CRITICAL, f"nvidia-container-toolkit {security.describe(s.toolkit)}", data=data,
                       fixes=[update or fixes.packages(probes.host, probes.platform, "update",
                                                       ("nvidia-container-toolkit",), why)])
    if s.config.ldconfig is not None and not s.config.ldconfig.startswith("@"):
        path = probes.host.path(CONFIG_TOML)
        return Verdict(Status.WARNING, f'{CONFIG_TOML}: ldconfig = "{s.config.ldconfig}" runs an ldconfig from the '
                       "container image, the path of CVE-2024-0136/0137 (NVIDIA bulletin 5599)", data=data,
                       fixes=[fixes.Fix("make it the host's (an @ before the path)", fixes.as_user(probes.host, [
                           "sed", "-i", "-E", 's|^([[:space:]]*ldconfig[[:space:]]*=[[:space:]]*")@?|\\1@|',
                           str(path)]))])
    return Verdict(Status.OK, f"nvidia-container-toolkit {s.toolkit} is at or above the security floor "
                   f"{security.floor()}; ldconfig is the host's", data=data)


def check_dev_char(probes: Probes) -> Verdict:
    """Legacy mode: containers lose the GPU after `systemctl daemon-reload` without /dev/char links to the NVIDIA
    nodes (NVIDIA/nvidia-container-toolkit 48, 1227; aws/amazon-ecs-ami 483)."""
    s = stack(probes)
    if s.mode != "legacy":
        raise NotApplicable(f"the runtime runs in {s.mode} mode: CDI puts the device nodes in the container's spec")
    nodes = nvidia_nodes(probes.host)
    if not nodes:
        raise NotApplicable("no NVIDIA character device under /dev")
    missing = []
    for path, major, minor in nodes:
        link = f"/dev/char/{major}:{minor}"
        if not probes.host.lexists(link) or probes.host.resolve(link) != path:
            missing.append(f"{major}:{minor} -> {path}")
    rule = probes.host.exists(DEV_CHAR_RULE)
    data = {"nodes": [p for p, _, _ in nodes], "missing": missing, "udev_rule": rule}
    if not probes.host.live:
        # An image's /dev is the build machine's devtmpfs, or empty: what the image needs is the rule that makes
        # the links at its boot.
        if rule:
            return Verdict(Status.OK, f"{DEV_CHAR_RULE} makes the /dev/char links at boot (--root: this /dev is "
                           "not the booted image's)", data=data)
        return Verdict(Status.WARNING, "nothing makes the /dev/char links to the NVIDIA device nodes at boot: "
                       "containers lose the GPU at a `systemctl daemon-reload` (legacy mode)", data=data,
                       fixes=dev_char_fixes(probes, now=False))
    if missing:
        return Verdict(Status.WARNING, f"/dev/char lacks {len(missing)} NVIDIA link(s) ({', '.join(missing[:4])}): "
                       "containers lose the GPU at the next `systemctl daemon-reload` (legacy mode)", data=data,
                       fixes=dev_char_fixes(probes, now=True))
    if not rule:
        return Verdict(Status.WARNING, "/dev/char has the NVIDIA links, but nothing makes them at the next boot",
                       data=data, fixes=dev_char_fixes(probes, now=False))
    return Verdict(Status.OK, f"/dev/char links all {len(nodes)} NVIDIA device nodes; {DEV_CHAR_RULE} remakes them",
                   data=data)


def check_cdi_specs(probes: Probes) -> Verdict:
    from gpuprep.engine.probes import host_view
    from gpuprep.gpu.inventory import probe_module

    s = stack(probes)
    module = probe_module(probes)
    view = host_view(probes)
    uuids = view.uuids if view is not None else None
    if not s.specs:
        if s.spec_in_use:
            return Verdict(Status.CRITICAL, f"no CDI spec in {', '.join(s.spec_dirs)}, yet "
                           f"{'the runtime runs in cdi mode' if s.mode == 'cdi' else 'Docker CDI is on'}: "
                           "`nvidia.com/gpu=all` is unresolvable", data={"spec_dirs": s.spec_dirs},
                           fixes=refresh_fixes(probes, s))
        raise NotApplicable(f"no CDI spec, and nothing reads one (runtime mode {s.mode}, Docker CDI "
                            f"{'on' if s.docker_cdi else 'off'})")
    findings, winners = cdi.judge(probes.host, s.specs, driver_version=module.version, host_uuids=uuids)
    too_new = _too_new_for_the_engine(s)
    findings += too_new
    paths = [sp.path for sp in s.specs]
    data = {"specs": paths, "spec_dirs": s.spec_dirs, "resolved_from": winners,
            "findings": [f.__dict__ for f in findings], "driver_version": module.version, "host_uuids": uuids,
            "in_use": s.spec_in_use}
    if not findings:
        return Verdict(Status.OK, f"{len(s.specs)} CDI spec(s) fit this host ({', '.join(paths)}); "
                       f"{len(winners)} device name(s) resolve", data=data)
    foreign = [f for f in findings if "does not have" in f.problem]
    worst = Status.CRITICAL if foreign or s.spec_in_use else Status.WARNING
    first = findings[0]
    found = [fixes.Fix("remove the spec made on another machine (sealing removes it before imaging)",
                       fixes.as_user(probes.host, ["rm", str(probes.host.path(foreign[0].spec))]))] if foreign \
        else refresh_fixes(probes, s)
    if too_new and not foreign and len(too_new) == len(findings):
        from gpuprep.engine.cdi import since_text

        # No argv: --docker takes an exact version of the repositories', which only they can name.
        update = fixes.Fix(f"update Docker to {since_text('cdi-spec-0.7.0')} or newer: gpuprep install --only "
                           "packages --docker VERSION, a version the repositories offer") if probes.platform.rpm \
            else None
        off = fixes.edit_by_hand(str(probes.host.path(daemon_json_path(probes))), "or turn Docker's own CDI off "
                                 '("features": {"cdi": false}): ECS tasks reach the GPU through the nvidia runtime, '
                                 "not Docker's CDI")
        found = [f for f in (update, off) if f is not None]
    return Verdict(worst, f"{first.spec}: {first.problem}" + (f" (and {len(findings) - 1} more)" if len(findings) > 1
                   else "") + ("" if s.spec_in_use else "; no route reads it now"), data=data, fixes=found)


def _too_new_for_the_engine(s: Stack) -> list[cdi.Finding]:
    """A spec format newer than Docker's own CDI reads (cdiVersion 0.7.0 needs Engine 26.1: the knowledge table
    docker-cdi): where Docker's CDI is on, its devices do not resolve."""
    from gpuprep.engine.cdi import since_text
    from gpuprep.packages.evr import vercmp

    since = since_text("cdi-spec-0.7.0")
    engine = (s.engine_version or "").split("+")[0]
    if not s.docker_cdi or not engine or vercmp(engine, since) >= 0:
        return []
    return [cdi.Finding("critical", sp.path, f"cdiVersion {sp.cdi_version} needs Docker Engine {since} or newer; "
                        f"this Engine is {engine}: Docker's CDI cannot read it")
            for sp in s.specs if sp.cdi_version and vercmp(sp.cdi_version, "0.7.0") >= 0]


REFRESH_UNITS = ("nvidia-cdi-refresh.path", "nvidia-cdi-refresh.service")


def refresh_fixes(probes: Probes, s: Stack, why: str = "regenerate it") -> list[fixes.Fix]:
    """The CDI spec written anew: by nvidia-cdi-refresh where the toolkit ships it (enabled, so a driver update
    rewrites it, and run now), else by NVIDIA's generator; and gpuprep's cdi-spec step where install runs."""
    from gpuprep.engine.cdi import spec_fixes

    host, p = probes.host, probes.platform
    if not s.refresh_shipped:
        return spec_fixes(host, p, why)
    found = [fixes.service(host, p, "enable", unit, f"{why}: nvidia-cdi-refresh, enabled, rewrites it at every "
                           "driver update") for unit in REFRESH_UNITS]
    found.append(fixes.service(host, p, "restart", REFRESH_UNITS[1], "and now"))
    found.append(fixes.gpuprep(host, p, "or let gpuprep write it and keep it written at every boot", "install",
                               "--only", "cdi-spec"))
    return [f for f in found if f is not None]


# Each goes in its group's place in doctor's report order (doctor.py).
CHECKS = [
    Check("toolkit-stack", "docker", "the NVIDIA stack: toolkit version, runtime mode, how nvidia is registered, "
          "Docker's CDI, CDI specs, nvidia-cdi-refresh", check_stack, timeout=8),
    Check("toolkit-cdi-specs", "docker", "every CDI spec parses and fits this host (nodes, driver libraries, GPU "
          "UUIDs); which file each device resolves to", check_cdi_specs, timeout=15, boot=True),
    Check("toolkit-dev-char", "gpu", "legacy mode: /dev/char links to every NVIDIA device node, remade at boot",
          check_dev_char, timeout=8),
    Check("toolkit-security", "packages", "nvidia-container-toolkit at or above the security floor (NVIDIA's "
          "bulletins); ldconfig is the host's", check_security, timeout=8),
]
