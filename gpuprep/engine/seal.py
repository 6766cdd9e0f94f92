"""seal's Engine steps: ``containers`` (every container, the running first) and ``images`` (every image
but ``--keep-image``, removed while the containers still go)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gpuprep import hints
from gpuprep.engine.dockerd import EngineDown
from gpuprep.engine.objects import (
    IMAGE_WORKERS,
    SealEngineRun,
    api_status,
    engine,
    engine_said,
    image_line,
    image_plan,
    parallel,
    removal_api,
    removal_order,
    remove_image,
    short_id,
)
from gpuprep.errors import StepFailed
from gpuprep.poll import poll_until
from gpuprep.report import plural
from gpuprep.runner.needs import ENGINE
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("gpuprep")

class ContainersStep(Step[list[dict[str, Any]]]):
    """Its plan: the rows of the containers to remove (the JSON's data["remove"])."""

    id = "containers"
    title = "stop and remove every container, the ECS agent's included"
    needs = (ENGINE,)

    def plan(self, ctx: Context) -> Change[list[dict[str, Any]]] | Converged:
        client = engine(ctx)
        if ctx.selected("images") and ctx.shared(SealEngineRun).image_plan is None:
            # The images step's list is wanted before the first removal (each image goes as soon as its
            # last container has): ask for it alongside the containers', not after.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal-plan") as pool:
                images = pool.submit(image_plan, ctx)
                found = client.api.containers(all=True)
                images.result()  # a --keep-image that names no image stops seal here, before any removal
        else:
            found = client.api.containers(all=True)
        if not found:
            return Converged("no containers")
        rows = sorted(({"kind": "container", "name": (c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/"),
                        "id": c["Id"], "image": c.get("Image", ""), "image_id": c.get("ImageID", ""),
                        "state": c.get("State", "")} for c in found),
                      key=lambda r: (r["name"], r["id"]))
        running = sum(r["state"] == "running" for r in rows)
        lines = [f"container {r['name']} ({r['id'][:12]}, {r['image']}, {r['state']})" for r in rows]
        return Change(f"remove {plural(len(rows), 'container')} ({running} running)",
                      commands=[["docker", "rm", "--force", "--volumes", "<each container>"]],
                      data={"remove": rows}, lines=lines, payload=rows)

    def apply(self, ctx: Context, change: Change[list[dict[str, Any]]]) -> Applied:
        rows = change.payload
        with removal_api(ctx) as api:
            # With the images step selected, each image goes as soon as its last container has: the Engine
            # deletes images while it is still removing containers, instead of after.
            early = EarlyImages(ctx, api, rows) if ctx.selected("images") else None

            def remove(row: dict[str, Any]) -> None:
                # force: the Engine kills a running container first, as `docker rm -f` does
                try:
                    api.remove_container(row["id"], force=True, v=True)
                except Exception as exc:
                    if api_status(exc) != 404:  # 404: gone already
                        raise
                if early is not None:
                    early.container_gone(row)

            def remove_all(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], BaseException]]:
                # 409: the Engine is removing it already
                return [(r, e) for r, e in parallel(remove, rows) if e is not None and api_status(e) != 409]

            failed = remove_all(removal_order(rows))
            # Only a refusal is tried again, not a removal that got no answer (the client's timeout): the Engine
            # can hang in a forced removal whose kill never sees the exit, and asking again waits as long again.
            unanswered = [(r, e) for r, e in failed if api_status(e) is None]
            refused = [(r, e) for r, e in failed if api_status(e) is not None]
            if refused:
                # Under many parallel removals overlayfs can answer "device or resource busy" for a moment:
                # try the ones that failed again, twice, half a second apart.
                log.info("waiting to remove %d containers the Engine refused: %s", len(refused),
                         engine_said(refused[0][1]))

                def again() -> list[tuple[dict[str, Any], BaseException]]:
                    nonlocal refused
                    refused = remove_all([r for r, _ in refused])
                    return refused

                poll_until(again, lambda left: not left, what="the Engine to remove the containers it refused",
                           timeout_s=5.0, interval_s=0.5, tries=2, level=logging.DEBUG)
            failed = unanswered + refused
            gone_early = early.finish() if early is not None else []
            try:
                left = {c["Id"] for c in api.containers(all=True)} & {r["id"] for r in rows}
            except Exception as exc:  # the Engine stopped answering
                if not failed:
                    raise EngineDown(ctx.host.docker_url, engine_said(exc), f"restart it (`"
                                     f"{hints.service(ctx.host, ctx.platform, 'restart', 'docker')}`) and run seal "
                                     "again", when=" after the removals") from None
                left = set()  # the failures say what did not go
        if failed or left:
            detail = "; ".join(f"{r['name']}: {engine_said(e)}" for r, e in failed[:3]) or \
                f"{len(left)} still listed"
            early_note = (f"; {plural(len(gone_early), 'image')} whose containers had all gone "
                          f"{'was' if len(gone_early) == 1 else 'were'} removed") if gone_early else ""
            hint = (f"the Engine did not answer removing {unanswered[0][0]['name']}: restart it (`systemctl "
                    "restart docker`) and run seal again" if unanswered else
                    "see `docker ps -a` and the Engine's log, then run seal again")
            from gpuprep.engine.dockerd import known_removal_deadlock

            known = known_removal_deadlock(ctx.host.engine_server) if unanswered else None
            if known:
                hint += f"; {known}"
            raise StepFailed(f"could not remove {max(len(failed), len(left))} of "
                             f"{plural(len(rows), 'container')}: {detail}{early_note}", hint,
                             data={"images_removed": [image_line(r) for r in gone_early]} if gone_early else None)
        return Applied()


class EarlyImages:
    """The images step's removals, started during the containers step: each planned image is removed as
    soon as no container of the plan uses it any more (at once when none did), a few at a time.

    ``finish`` waits for those in flight and records each outcome in ``SealEngineRun.images_early`` (image
    id -> None or the Engine's refusal); the images step then removes what is left and retries refusals
    (a parent image refuses until its children are gone).
    """

    def __init__(self, ctx: Context, api: APIClient, containers: list[dict[str, Any]]) -> None:
        import threading

        self.ctx, self.api = ctx, api
        self.rows = {r["id"]: r for r in image_plan(ctx)[0]}
        self.users: dict[str, set[str]] = {}
        for c in containers:
            if c.get("image_id") in self.rows:
                self.users.setdefault(c["image_id"], set()).add(c["id"])
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="seal-image")
        self.futures: dict[str, Future[None]] = {}
        for image_id in self.rows:
            if image_id not in self.users:
                self._submit(image_id)

    def _submit(self, image_id: str) -> None:
        with self.lock:
            if image_id not in self.futures:
                self.futures[image_id] = self.pool.submit(remove_image, self.api, self.rows[image_id])

    def container_gone(self, row: dict[str, Any]) -> None:
        with self.lock:
            users = self.users.get(row.get("image_id", ""))
            if users is None:
                return
            users.discard(row["id"])
            if users:
                return
            del self.users[row["image_id"]]
        self._submit(row["image_id"])

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the removals started; the rows of the images removed."""
        self.pool.shutdown(wait=True)
        outcomes = {image_id: f.exception() for image_id, f in self.futures.items()}
        self.ctx.shared(SealEngineRun).images_early = outcomes
        return [self.rows[i] for i, exc in outcomes.items() if exc is None]


class ImagesStep(Step[list[dict[str, Any]]]):
    """Its plan: the rows of the images to remove (the JSON's data["remove"])."""

    id = "images"
    title = "remove every image except those named by --keep-image (reported with digest and size)"
    needs = (ENGINE,)

    def plan(self, ctx: Context) -> Change[list[dict[str, Any]]] | Converged:
        remove, keep = image_plan(ctx)
        kept = [{k: r[k] for k in ("refs", "id", "tags", "digests", "size")} for r in keep]
        ctx.shared(SealEngineRun).kept_images = kept
        kept_lines = [image_line(r, "keep") for r in keep]
        kept_note = f"; kept {len(keep)}" if keep else ""
        if not remove:
            return Converged(f"no images to remove{kept_note}", data={"kept": kept},
                             lines=kept_lines)
        lines = [image_line(r) for r in remove] + kept_lines
        return Change(f"remove {plural(len(remove), 'image')}{kept_note}",
                      commands=[["docker", "rmi", "--force", "<each image>"]],
                      data={"remove": remove, "kept": kept}, lines=lines, payload=remove)

    def apply(self, ctx: Context, change: Change[list[dict[str, Any]]]) -> Applied:
        # Images the containers step removed already (as their containers went) are done; refusals are
        # tried again here, with the rest.
        early = ctx.shared(SealEngineRun).images_early
        pending = [r for r in change.payload if r["id"] not in early or early[r["id"]] is not None]
        failed: list[tuple[dict[str, Any], BaseException]] = []
        if pending:
            with removal_api(ctx) as api:
                # A parent image can only go after its children: retry conflicts while each round makes progress.
                for _ in range(5):
                    failed = [(r, e) for r, e in parallel(lambda row: remove_image(api, row), pending)
                              if e is not None]
                    if not failed or len(failed) == len(pending):
                        break
                    pending = [r for r, _ in failed]
        if failed:
            detail = "; ".join(f"{', '.join(r['tags']) or short_id(r['id'])}: {engine_said(e)}"
                               for r, e in failed[:3])
            raise StepFailed(f"could not remove {len(failed)} of {plural(len(change.payload), 'image')}: {detail}",
                             "an image in use by a container stays until the container goes "
                             "(run seal without --skip containers), then run seal again")
        return Applied()
