"""container check: a container started the way ECS starts one sees the host's GPUs, and so does one started
through Docker's CDI where that is on.

The proof is ``gpuprep.engine.gpu_routes.probe_routes``, the same one ``install``'s gpu-check runs, over the
routes ``configured_routes`` finds in ``docker info`` and daemon.json, in the image ``engine/check_image.py``
chooses (the one the host was built and sealed with before the default). In ``doctor --boot`` nothing is pulled
(no network is promised at boot): a missing image skips the check. A pull doctor makes is named in the finding; one
that fails where a local image the host was built with can prove the route is a warning, not an unknown.
"""

from __future__ import annotations

from gpuprep import fixes
from gpuprep.engine.probes import daemon_json, docker_info, host_view
from gpuprep.gpu.inventory import persistence_fixes
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict
from gpuprep.runner.needs import CONTAINERS, ENGINE

SLOW_SECONDS = 10.0


def check_gpu_container(probes: Probes) -> Verdict:
    from gpuprep.engine import gpu_container
    from gpuprep.engine.check_image import image_choice
    from gpuprep.engine.checks import ENGINE_FIRST, default_runtime_fixes, register_fixes, runtime_binary_fixes
    from gpuprep.engine.dockerd import EngineDown
    from gpuprep.engine.gpu_routes import configured_routes, probe_routes
    from gpuprep.engine.route_fixes import docker_pull, route_fixes
    from gpuprep.errors import BadInput
    from gpuprep.gpu import inventory

    pci = inventory.probe_pci(probes)
    if pci.present and not pci.gpus:
        raise NotApplicable("no NVIDIA GPU on this host (see gpu-pci): no GPU for a container to see")
    try:
        # The docker checks' `docker info`, asked once: an Engine that is down is said at once, without
        # trying to create a container; docker-engine says why and how to start it.
        info = docker_info(probes)
    except EngineDown:
        raise NotApplicable(ENGINE_FIRST) from None
    try:
        _, config = daemon_json(probes)
    except BadInput:
        config = {}  # docker-daemon-json reports it; the running Engine's info still says whether CDI is on
    routes = configured_routes(info, config)
    view = host_view(probes)
    choice = image_choice(probes)
    image = choice.image
    if choice.present is False and probes.options.boot and choice.fallback:
        image = choice.fallback  # --boot pulls nothing: the local image the host was built with proves the route
    proof = probe_routes(probes.host, image, routes.routes, host_view=view, pull=not probes.options.boot,
                         cdi_hint=routes.cdi_hint)
    not_pulled = ""
    if proof.main.link == gpu_container.IMAGE and choice.fallback and not probes.options.boot:
        # The registry cannot be reached (or lacks the image): a local image the host was built with still proves
        # the route, and the pull that failed is one line of its own, not an unknown verdict.
        not_pulled = proof.main.summary
        image = choice.fallback
        proof = probe_routes(probes.host, image, routes.routes, host_view=view, pull=False,
                             cdi_hint=routes.cdi_hint)
    result = proof.main
    data = {**proof.as_data(), "host_source": view.source if view else None, "cdi_why": routes.why,
            "image_choice": choice.as_data(), **({"not_pulled": not_pulled} if not_pulled else {})}
    if proof.ok:
        compared = f"; UUIDs match the host's ({view.source})" if view else "; no host view to compare with"
        pulled = f"; pulled {image} ({result.pull_seconds:.1f}s)" if result.pull_seconds else ""
        if not_pulled:
            local = fixes.gpuprep(probes.host, probes.platform, "prove it with the local image, pulling nothing",
                                  "doctor", "--image", image)
            pull = docker_pull(probes.host, choice.image, f"or pre-load {choice.image} where its registry can be "
                               "reached")
            return Verdict(Status.WARNING, f"{proof.summary()}{compared}; proven with the local {image} because "
                           f"{not_pulled}", data=data, fixes=[f for f in (local, pull) if f is not None])
        if proof.seconds > SLOW_SECONDS:
            return Verdict(Status.WARNING, f"{proof.summary()}{compared}{pulled}; slow: {proof.seconds:.1f}s",
                           data=data, fixes=persistence_fixes(probes))
        return Verdict(Status.OK, proof.summary() + compared + pulled, data=data)
    if result.link == gpu_container.IMAGE:
        if probes.options.boot:
            raise NotApplicable(f"image {image} is not present locally and --boot pulls nothing: keep it in the "
                                f"image with `gpuprep seal --keep-image {image}` for this check to run at boot")
        return Verdict(Status.UNKNOWN, result.summary, data=data, fixes=route_fixes(probes, result))
    if result.link == gpu_container.ENGINE:
        raise NotApplicable(ENGINE_FIRST)
    if result.link == gpu_container.RUNTIME_MISSING:  # docker-nvidia-runtime's finding, and its fix (one value)
        return Verdict(Status.CRITICAL, proof.summary(), data=data, fixes=register_fixes(probes),
                       cause="docker-nvidia-runtime")
    if result.link == gpu_container.NOT_DEFAULT:  # docker-default-runtime's finding, and its fix (one value)
        return Verdict(Status.CRITICAL, proof.summary(), data=data, fixes=default_runtime_fixes(probes, info),
                       cause="docker-default-runtime")
    if result.link == gpu_container.RUNTIME_BINARY:
        # The same fix docker-runtime-binary gives: the package that owns the binary, reinstalled.
        runtimes, default = info.get("Runtimes") or {}, info.get("DefaultRuntime") or ""
        path = str((runtimes.get(default) or {}).get("path") or "")
        if path:
            return Verdict(Status.CRITICAL, proof.summary(), data=data, fixes=runtime_binary_fixes(probes, path),
                           cause="docker-runtime-binary")
    return Verdict(Status.CRITICAL, proof.summary(), data=data,
                   fixes=route_fixes(probes, result, cdi_restart=bool(routes.cdi_hint)))


CHECKS = [
    Check("gpu-container", "container", "nvidia-smi in a container with no --runtime (and through CDI where "
          "Docker's CDI is on) sees the host's GPUs",
          check_gpu_container, timeout=180, needs=(CONTAINERS, ENGINE), boot=True),
]
