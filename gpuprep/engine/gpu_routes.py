"""The routes a container gets the GPUs by, and the proof of each: what ``gpu-check`` and doctor's container check
run (``engine/gpu_container.py`` proves one route; here every configured one, side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gpuprep.engine import gpu_container
from gpuprep.engine.gpu_container import (
    CDI_ROUTE,
    DEFAULT_ROUTE,
    IMAGE,
    ROUTE_WORDS,
    RUN_TIMEOUT,
    ProbeResult,
    route_took,
)
from gpuprep.gpu.view import HostGpus, host_gpus
from gpuprep.host import Host


@dataclass
class Routes:
    """The routes to prove on an Engine, why the CDI route is among them or not, and the fix for ``cdi-off``."""

    routes: list[str]
    why: str
    cdi_hint: str = ""


def configured_routes(info: dict[str, Any] | None, daemon_config: dict[str, Any] | None) -> Routes:
    """The default runtime always (ECS's way). The CDI route where Docker's CDI is on (``docker info`` lists
    ``CDISpecDirs``; toolkit/stack.py decides), and also where daemon.json turns it on for an Engine that has it
    (25+) but the running one has not taken that up: that route then fails ``cdi-off``, saying dockerd must
    restart (SIGHUP does not turn CDI on)."""
    from gpuprep.engine.cdi import docker_cdi, engine_since

    config = daemon_config or {}
    version = str((info or {}).get("ServerVersion") or "") or None
    on, why = docker_cdi(config, version, info)
    if on:
        return Routes([DEFAULT_ROUTE, CDI_ROUTE], why)
    features = config.get("features")
    numbers = tuple(int(x) for x in (version or "").split("+")[0].split(".")[:2] if x.isdigit())
    if isinstance(features, dict) and features.get("cdi") is True and len(numbers) == 2 \
            and numbers >= engine_since("cdi"):
        return Routes([DEFAULT_ROUTE, CDI_ROUTE], f"daemon.json sets features.cdi but {why}: dockerd has not "
                      "restarted since", "dockerd has not taken up features.cdi from daemon.json: restart it "
                      "(`gpuprep install --only docker-reload`, or `systemctl restart docker`)")
    return Routes([DEFAULT_ROUTE], why)


@dataclass
class Proof:
    """Every route's result: ``ok`` when each route saw the host's GPUs."""

    results: list[ProbeResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> ProbeResult | None:
        return next((r for r in self.results if not r.ok), None)

    @property
    def main(self) -> ProbeResult:
        """The result the step or check reports: the first failing route's, else the first route's."""
        return self.failed or self.results[0]

    @property
    def seconds(self) -> float:
        return max(r.seconds for r in self.results)

    def summary(self) -> str:
        """One line: each route's GPUs and time when all passed, else the failing route's link and why."""
        bad = self.failed
        if bad is None:
            first, *rest = self.results
            return first.summary + "".join(f" and {len(r.gpus)} {route_took(r.route, r.seconds)}" for r in rest)
        text = bad.summary
        if len(self.results) > 1 and bad.route == DEFAULT_ROUTE and not text.startswith(ROUTE_WORDS[DEFAULT_ROUTE]):
            text = f"{ROUTE_WORDS[DEFAULT_ROUTE]}: {text}"
        passed = [r.route for r in self.results if r.ok]
        return f"{bad.link}: {text}" + (f" (route {', '.join(passed)} passed)" if passed else "")

    def as_data(self) -> dict[str, Any]:
        return {**self.main.as_data(), "routes": [r.route_data() for r in self.results]}


def probe_routes(host: Host, image: str, routes: list[str] | tuple[str, ...] = (DEFAULT_ROUTE,), *,
                 host_view: HostGpus | None | bool = True, pull: bool = True, progress: bool = False,
                 timeout: float = RUN_TIMEOUT, cdi_hint: str = "") -> Proof:
    """Prove each of ``routes``: their containers run side by side (each its own client), the image pulled
    once first where it is missing and ``pull`` allows."""
    from concurrent.futures import ThreadPoolExecutor

    routes = list(routes)
    with ThreadPoolExecutor(max_workers=len(routes) + 1) as pool:
        asked = pool.submit(host_gpus, host) if host_view is True else None

        def one(route: str, may_pull: bool) -> ProbeResult:
            return gpu_container.probe(host, image, route=route, host_view=None, pull=may_pull,
                                       progress=progress, timeout=timeout, cdi_hint=cdi_hint)

        results = list(pool.map(lambda r: one(r, pull and len(routes) == 1), routes))
        if pull and len(routes) > 1 and any(r.link == IMAGE for r in results):
            first = one(routes[0], True)  # pulls it, once
            rest = routes[1:]
            results = [first] + ([one(r, False) for r in rest] if first.link != IMAGE else
                                 [replace(first, route=r) for r in rest])  # no image: no route can run
        view = asked.result() if asked is not None else host_view
    view = view if isinstance(view, HostGpus) else None
    for result in results:
        result.host_uuids = view.uuids if view is not None else None
        if result.ok and view is not None:
            gpu_container._compare(result, view)
    return Proof(results)


__all__ = ["CDI_ROUTE", "DEFAULT_ROUTE", "Proof", "Routes", "configured_routes", "probe_routes"]
