"""seal: leave the instance ready to be imaged, with nothing of this machine in the image.

Steps, in docs/contract.md's order: preflight, stop-ecs, containers, images, ecs-state, gpu-info, deep-clean
(only with --deep), stamp. Why each matters (docs/domain.md): a baked agent checkpoint makes instances fail
to register or join the build machine's cluster (aws/amazon-ecs-agent 858, 2738); a baked
``nvidia-gpu-info.json`` holds the build machine's GPU UUIDs; AWS Batch's guide says to stop the agent
and remove ``/var/lib/ecs/data/*`` before creating an AMI.

Deletion never leaves the declared paths: every candidate is found by walking real directories
(never through a symlink), removed with ``lstat`` semantics (a symlink goes as a link, its target
untouched) and its parent is re-checked right before removal. ``--dry-run`` lists exactly what a real
run removes, because both come from the same ``plan``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpuprep import ecs
from gpuprep.errors import BadInput, CommandError, PreconditionUnmet, StepFailed
from gpuprep.host import Host
from gpuprep.report import StepResult, StepStatus
from gpuprep.runner.steps import Change, Context, Converged, Skip, Step

log = logging.getLogger("gpuprep")

SEAL_JSON = "/etc/gpuprep/seal.json"
NVIDIA_VERSION_FILE = "/proc/driver/nvidia/version"
# Removals in flight at once. The Engine does the work (kill, unmount, delete); the docker CLI's
# `docker rm` runs up to 50 at once. docker-py's default pool keeps 10 connections, so the removals
# use a client of their own with a pool this size (bench/bench_seal.py measured 10 vs 32 here).
DOCKER_WORKERS = 32
# Image removals in flight at once while containers are still going. The Engine deletes image layers one
# at a time (its layer store holds one lock), so a few are enough to keep it busy.
IMAGE_WORKERS = 4
# How long one removal may take before the Engine counts as not answering (deleting a big container's
# layer takes seconds; a hung forced removal never returns).
REMOVAL_TIMEOUT = 120
ECS_STOP_TIMEOUT = 90  # ecs-init stops the agent with `docker stop` (30 s grace) and then exits
PREVIEW_LINES = 15


# -- files: what to remove, found without following links --------------------------------
@dataclass(frozen=True)
class Item:
    """One filesystem change: ``remove`` a file, link or directory tree, or ``truncate`` a file."""

    action: str  # "remove" | "truncate"
    path: str  # host path (what the report shows)
    kind: str  # "file" | "dir" | "link" | "other"
    base: str = "/"  # the declared directory it was found under; removal never leaves it

    def line(self) -> str:
        if self.kind == "dir":
            return f"{self.action} {self.path}/ (directory and everything in it)"
        if self.kind == "link":
            return f"{self.action} {self.path} (symlink only; its target is kept)"
        return f"{self.action} {self.path}"

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "path": self.path, "kind": self.kind}


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


def _declared_base(host: Host, base: str) -> Path | None:
    """The real directory of the declared host path ``base``, or None when it is not there.

    The declared path itself may be a link (an admin moved /var/log to a volume): it is followed
    inside the root (``Host.path``); one that climbs out of the root raises LinkEscapes (exit 2).
    """
    real = host.path(base)
    return real if real.is_dir() else None


def _split(pattern: str) -> tuple[str, list[str]]:
    """``/home/*/.ssh/authorized_keys`` -> (``/home``, [``*``, ``.ssh``, ``authorized_keys``])."""
    parts = pattern.strip("/").split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return "/" + "/".join(fixed), parts[len(fixed):]


def find(host: Host, pattern: str) -> list[tuple[str, Path, os.stat_result]]:
    """Existing matches of ``pattern`` (fnmatch per component, dot files included), sorted by path.

    Components after the fixed prefix are walked only through real directories, never a link;
    the last component may be anything (a link is reported as a link). Returns (host path, real
    path, lstat).
    """
    from fnmatch import fnmatchcase

    base, rest = _split(pattern)
    real_base = _declared_base(host, base)
    if real_base is None:
        return []
    level: list[tuple[str, Path]] = [(base.rstrip("/"), real_base)]
    for i, comp in enumerate(rest):
        last = i == len(rest) - 1
        nxt: list[tuple[str, Path]] = []
        for hp, rp in level:
            try:
                names = sorted(os.listdir(rp))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for name in names:
                if not fnmatchcase(name, comp):
                    continue
                child = rp / name
                try:
                    st = os.lstat(child)
                except FileNotFoundError:
                    continue
                if not last and not stat.S_ISDIR(st.st_mode):
                    continue  # a link to a directory is not walked through
                nxt.append((f"{hp}/{name}", child))
        level = nxt
    out = []
    for hp, rp in level:
        try:
            out.append((hp, rp, os.lstat(rp)))
        except FileNotFoundError:
            continue
    return out


def remove_items(host: Host, pattern: str) -> list[Item]:
    base = _split(pattern)[0]
    return [Item("remove", hp, _kind(st), base) for hp, _, st in find(host, pattern)]


def execute(host: Host, item: Item) -> bool:
    """Carry out one item; False when it was already gone. Links are unlinked, never followed.

    ``Host.remove`` walks from the declared base to the item without following a link and removes
    relative to the directory it holds open: a directory swapped for a link since planning stops the
    removal (TreeChanged) instead of redirecting it.
    """
    return host.remove(item.path, base=item.base, truncate=item.action == "truncate")


class FileStep(Step):
    """A step that removes (or truncates) a planned list of items; dry-run and real run share the list."""

    what = "files"

    def items(self, ctx: Context) -> list[Item]:
        raise NotImplementedError

    def nothing(self, ctx: Context) -> str:
        return f"no {self.what} to remove"

    def plan(self, ctx: Context) -> Change | Converged:
        items = self.items(ctx)
        if not items:
            return Converged(self.nothing(ctx))
        lines = [i.line() for i in items]
        n_trunc = sum(i.action == "truncate" for i in items)
        n_rm = len(items) - n_trunc
        parts = [f"remove {n_rm} {self._noun(n_rm)}"] if n_rm else []
        if n_trunc:
            parts.append(f"truncate {n_trunc} {'file' if n_trunc == 1 else 'files'}")
        return Change(", ".join(parts), data={"remove": [i.as_dict() for i in items], "lines": lines},
                      payload=items)

    def _noun(self, n: int) -> str:
        return "item" if n == 1 else "items"

    def apply(self, ctx: Context, change: Change) -> str | None:
        done = sum(execute(ctx.host, item) for item in change.payload)
        ctx.state["seal_removed"] = True
        gone = len(change.payload) - done
        return change.summary + (f" ({gone} already gone)" if gone else "")


class EcsStateStep(FileStep):
    id = "ecs-state"
    title = "remove the ECS agent's state: /var/lib/ecs/data/* (checkpoints, metadata/)"
    what = "agent state"

    def items(self, ctx: Context) -> list[Item]:
        return remove_items(ctx.host, f"{ecs.ECS_DATA_DIR}/*")

    def nothing(self, ctx: Context) -> str:
        return f"{ecs.ECS_DATA_DIR} holds no agent state"


class GpuInfoStep(FileStep):
    id = "gpu-info"
    title = "remove /var/lib/ecs/gpu/nvidia-gpu-info.json (this machine's GPU UUIDs; ecs-init rewrites it)"
    what = "gpu info"

    def items(self, ctx: Context) -> list[Item]:
        items = remove_items(ctx.host, ecs.GPU_INFO)
        for i in items:
            if i.kind == "dir":
                raise StepFailed(f"{ecs.GPU_INFO} is a directory, expected ecs-init's file",
                                 f"look at it and remove it by hand (rm -r {ecs.GPU_INFO})")
        return items

    def nothing(self, ctx: Context) -> str:
        return f"no {ecs.GPU_INFO}"


# What amazon-ecs-ami's scripts/cleanup.sh removes before imaging (docs/domain.md), in report order.
DEEP_REMOVE = (
    "/var/lib/cloud/*",  # cloud-init state: instances from the image must run cloud-init afresh
    "/etc/ssh/ssh_host_*",  # host keys: every instance makes its own at first boot
    "/root/.ssh/authorized_keys",
    "/home/*/.ssh/authorized_keys",
)
MACHINE_ID = "/etc/machine-id"  # left empty, not removed: systemd then generates one at first boot
LOG_DIR = "/var/log"
DEEP_REMOVE_AFTER_LOGS = (
    "/var/lib/dhclient/*",  # dhclient leases (AL1/AL2)
    "/var/lib/dhcp/dhclient*",
    "/var/lib/NetworkManager/*.lease",
    "/var/cache/yum/*",
    "/var/cache/dnf/*",
    "/var/lib/yum/history/*",
    "/var/lib/dnf/history*",
)
# Rotated or compressed logs are removed; live logs are truncated, keeping owner and mode.
_ROTATED = re.compile(r"(\.\d+|\.gz|\.xz|\.bz2|\.zst|-\d{8}(\.gz)?)$")


def log_items(host: Host) -> list[Item]:
    """/var/log: live log files truncated, rotated ones and journal files removed; directories kept."""
    base = _declared_base(host, LOG_DIR)
    if base is None:
        return []
    items: list[Item] = []

    def walk(hp: str, rp: Path, in_journal: bool) -> None:
        try:
            names = sorted(os.listdir(rp))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for name in names:
            child = rp / name
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            chp = f"{hp}/{name}"
            if stat.S_ISDIR(st.st_mode):
                walk(chp, child, in_journal or (hp == LOG_DIR and name == "journal"))
            elif stat.S_ISREG(st.st_mode):
                # journald's binary files cannot be truncated into a valid journal: remove them.
                if in_journal or _ROTATED.search(name):
                    items.append(Item("remove", chp, "file", LOG_DIR))
                elif st.st_size > 0:
                    items.append(Item("truncate", chp, "file", LOG_DIR))
            # links and sockets under /var/log are left alone (never followed)

    walk(LOG_DIR, base, False)
    return items


class DeepCleanStep(FileStep):
    id = "deep-clean"
    title = "with --deep: cloud-init state, SSH host keys, authorized_keys, machine-id, logs, leases, yum/dnf caches"
    what = "deep-clean items"

    def plan(self, ctx: Context) -> Change | Converged:
        if not getattr(ctx.options, "deep", False):
            raise Skip("only with --deep")
        return super().plan(ctx)

    def items(self, ctx: Context) -> list[Item]:
        host = ctx.host
        items: list[Item] = []
        for pattern in DEEP_REMOVE:
            items += remove_items(host, pattern)
        for hp, _, st in find(host, MACHINE_ID):
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                items.append(Item("truncate", hp, "file", "/etc"))
        items += log_items(host)
        for pattern in DEEP_REMOVE_AFTER_LOGS:
            items += remove_items(host, pattern)
        return items

    def nothing(self, ctx: Context) -> str:
        return "nothing left to clean"


# -- the Docker Engine --------------------------------------------------------------------
def engine(ctx: Context):
    """The docker-py client, pinged; Skip with --root and no DOCKER_HOST; StepFailed when it is down."""
    host = ctx.host
    url = host.docker_url
    if url is None:
        raise Skip("no Docker Engine with --root (set DOCKER_HOST to use one)")
    if "docker_engine" in ctx.state:
        return ctx.state["docker_engine"]  # pinged once per run: every step of seal asks for it
    try:
        client = host.docker(timeout=60)  # pings the Engine once, to learn its API version
    except Exception as exc:  # docker-py lets requests' ConnectionError through when the socket is dead
        detail = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        hint = ("start it (`systemctl start docker`), or leave the Docker steps out with "
                "--skip containers,images" if host.live else
                f"check that DOCKER_HOST={url} names a running Engine, or unset DOCKER_HOST to skip the Docker steps")
        raise StepFailed(f"the Docker Engine at {url} does not answer: {detail}", hint) from None
    ctx.state["docker_engine"] = client
    return client


@contextlib.contextmanager
def removal_api(ctx: Context):
    """A low-level client with a connection pool as wide as the removal threads, closed afterwards."""
    import docker

    client = engine(ctx)
    api = docker.APIClient(base_url=ctx.host.docker_url, version=client.api.api_version, timeout=REMOVAL_TIMEOUT,
                           max_pool_size=DOCKER_WORKERS + IMAGE_WORKERS)
    if ctx.host.docker_url.startswith("unix:"):
        # A unix socket has no proxy and no netrc: without this, requests looks both up for every removal.
        api.trust_env = False
    try:
        yield api
    finally:
        api.close()


def _parallel(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[tuple[Any, BaseException | None]]:
    items = list(items)
    if not items:
        return []

    def run(item):
        try:
            fn(item)
            return item, None
        except Exception as exc:
            return item, exc

    with ThreadPoolExecutor(max_workers=min(DOCKER_WORKERS, len(items)), thread_name_prefix="seal") as pool:
        return list(pool.map(run, items))


def _api_status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _engine_said(exc: BaseException) -> str:
    """The Engine's own words for a refused call (docker-py's APIError.explanation), not the URL first."""
    return str(getattr(exc, "explanation", None) or exc).strip()[:200]


def _short_id(id_: str) -> str:
    return id_.split(":", 1)[-1][:12]


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def removal_order(rows: list[dict]) -> list[dict]:
    """Running containers first, then the others; within each, containers of one image together.

    Every layer the Engine removes makes it read the whole mount table (``RecursiveUnmount``), and the
    kernel writes out each mounted overlay's options for every read: that is the Engine's largest
    avoidable cost here. Only running containers have an overlay mounted, so once they have gone the
    stopped containers' and the images' layers are removed against a short table. Containers of one
    image next to each other let the image go early instead of at the very end.
    """
    return sorted(rows, key=lambda r: (r.get("state") != "running", r.get("image_id", ""), r["name"]))


class ContainersStep(Step):
    id = "containers"
    title = "stop and remove every container, the ECS agent's included"

    def plan(self, ctx: Context) -> Change | Converged:
        client = engine(ctx)
        if _selected(ctx, "images") and "image_plan" not in ctx.state:
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
        return Change(f"remove {len(rows)} containers ({running} running)",
                      commands=[["docker", "rm", "--force", "--volumes", "<each container>"]],
                      data={"remove": rows, "lines": lines}, payload=rows)

    def apply(self, ctx: Context, change: Change) -> str | None:
        rows = change.payload
        with removal_api(ctx) as api:
            # With the images step selected, each image goes as soon as its last container has: the Engine
            # deletes images while it is still removing containers, instead of after.
            early = EarlyImages(ctx, api, rows) if _selected(ctx, "images") else None

            def remove(row):
                # force: the Engine kills a running container first, as `docker rm -f` does
                try:
                    api.remove_container(row["id"], force=True, v=True)
                except Exception as exc:
                    if _api_status(exc) != 404:  # 404: gone already
                        raise
                if early is not None:
                    early.container_gone(row)

            def remove_all(rows: list[dict]) -> list[tuple[dict, BaseException]]:
                # 409: the Engine is removing it already
                return [(r, e) for r, e in _parallel(remove, rows) if e is not None and _api_status(e) != 409]

            failed = remove_all(removal_order(rows))
            # Only a refusal is tried again, not a removal that got no answer (the client's timeout): the Engine
            # can hang in a forced removal whose kill never sees the exit, and asking again waits as long again.
            unanswered = [(r, e) for r, e in failed if _api_status(e) is None]
            refused = [(r, e) for r, e in failed if _api_status(e) is not None]
            if refused:
                # Under many parallel removals overlayfs can answer "device or resource busy" for a moment:
                # try the ones that failed again, twice, half a second apart.
                from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_fixed

                log.info("waiting to remove %d containers the Engine refused: %s", len(refused),
                         _engine_said(refused[0][1]))
                def again() -> list[tuple[dict, BaseException]]:
                    nonlocal refused
                    refused = remove_all([r for r, _ in refused])
                    return refused

                Retrying(stop=stop_after_attempt(2), wait=wait_fixed(0.5), retry=retry_if_result(bool),
                         retry_error_callback=lambda rs: rs.outcome.result())(again)
            failed = unanswered + refused
            ctx.state["seal_removed"] = True
            gone_early = early.finish() if early is not None else []
            try:
                left = {c["Id"] for c in api.containers(all=True)} & {r["id"] for r in rows}
            except Exception as exc:  # the Engine stopped answering
                if not failed:
                    raise StepFailed(f"the Docker Engine stopped answering after the removals: {_engine_said(exc)}",
                                     "restart it (`systemctl restart docker`) and run seal again") from None
                left = set()  # the failures say what did not go
        if failed or left:
            detail = "; ".join(f"{r['name']}: {_engine_said(e)}" for r, e in failed[:3]) or \
                f"{len(left)} still listed"
            early_note = f"; {len(gone_early)} images whose containers had all gone were removed" if gone_early else ""
            hint = (f"the Engine did not answer removing {unanswered[0][0]['name']}: restart it (`systemctl "
                    "restart docker`) and run seal again" if unanswered else
                    "see `docker ps -a` and the Engine's log, then run seal again")
            from gpuprep.engine.dockerd import known_removal_deadlock

            known = known_removal_deadlock(ctx.host.engine_server) if unanswered else None
            if known:
                hint += f"; {known}"
            raise StepFailed(f"could not remove {max(len(failed), len(left))} of {len(rows)} "
                             f"containers: {detail}{early_note}", hint,
                             data={"images_removed": [_image_line(r) for r in gone_early]} if gone_early else None)
        return None


class EarlyImages:
    """The images step's removals, started during the containers step: each planned image is removed as
    soon as no container of the plan uses it any more (at once when none did), a few at a time.

    ``finish`` waits for those in flight and records each outcome in ``ctx.state["images_early"]`` (image
    id -> None or the Engine's refusal); the images step then removes what is left and retries refusals
    (a parent image refuses until its children are gone).
    """

    def __init__(self, ctx: Context, api, containers: list[dict]) -> None:
        import threading

        self.ctx, self.api = ctx, api
        self.rows = {r["id"]: r for r in image_plan(ctx)[0]}
        self.users: dict[str, set[str]] = {}
        for c in containers:
            if c.get("image_id") in self.rows:
                self.users.setdefault(c["image_id"], set()).add(c["id"])
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="seal-image")
        self.futures: dict[str, Any] = {}
        for image_id in self.rows:
            if image_id not in self.users:
                self._submit(image_id)

    def _submit(self, image_id: str) -> None:
        with self.lock:
            if image_id not in self.futures:
                self.futures[image_id] = self.pool.submit(remove_image, self.api, self.rows[image_id])

    def container_gone(self, row: dict) -> None:
        with self.lock:
            users = self.users.get(row.get("image_id", ""))
            if users is None:
                return
            users.discard(row["id"])
            if users:
                return
            del self.users[row["image_id"]]
        self._submit(row["image_id"])

    def finish(self) -> list[dict]:
        """Wait for the removals started; the rows of the images removed."""
        self.pool.shutdown(wait=True)
        outcomes = {image_id: f.exception() for image_id, f in self.futures.items()}
        self.ctx.state["images_early"] = outcomes
        return [self.rows[i] for i, exc in outcomes.items() if exc is None]


# -- images -------------------------------------------------------------------------------
def _normal_repo(repo: str) -> str:
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return repo[len("library/"):] if repo.startswith("library/") else repo


def _normal_tag(ref: str) -> str:
    repo, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        repo, tag = ref[:colon], ref[colon + 1:]
    return f"{_normal_repo(repo)}:{tag}"


def image_matches(ref: str, image: dict) -> bool:
    """``ref`` names ``image`` by tag (``tiny``, ``tiny:1``, ``docker.io/library/tiny:1``), by digest
    (``repo@sha256:...`` or a bare ``sha256:...`` repo digest), or by id (``sha256:...`` or at least 12 hex)."""
    ref = ref.strip()
    image_id = image.get("Id", "")
    tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
    digests = [d for d in image.get("RepoDigests") or [] if "@" in d]
    if ref.startswith("sha256:"):
        return image_id == ref or (len(ref) >= 19 and image_id.startswith(ref)) or \
            any(d.split("@", 1)[1] == ref for d in digests)
    if re.fullmatch(r"[0-9a-f]{12,64}", ref) and image_id[7:].startswith(ref):
        return True
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return any(_normal_repo(d.split("@", 1)[0]) == _normal_repo(repo) and d.split("@", 1)[1] == digest
                   for d in digests)
    return _normal_tag(ref) in {_normal_tag(t) for t in tags}


def _image_row(img: dict) -> dict:
    tags = sorted(t for t in img.get("RepoTags") or [] if t != "<none>:<none>")
    digests = sorted(d for d in img.get("RepoDigests") or [] if "@" in d)
    return {"kind": "image", "id": img["Id"], "tags": tags, "digests": digests, "size": img.get("Size")}


def _image_line(row: dict, verb: str = "image") -> str:
    names = ", ".join(row["tags"]) or "<untagged>"
    digests = row.get("digests") or []
    digest = f", {digests[0]}" + (f" (+{len(digests) - 1} more)" if len(digests) > 1 else "") if digests else ""
    if verb == "keep" and not digests:
        # Only a pull or a push gives an image a registry digest; the id is its content digest.
        digest = ", no registry digest: built or imported here"
    return f"{verb} {names} ({_short_id(row['id'])}{digest}, {_human(row.get('size'))})"


def image_plan(ctx: Context) -> tuple[list[dict], list[dict]]:
    """``plan_images`` once per run, before anything is removed: the preview, the containers step (which
    starts removing images as their containers go) and the images step all see the same lists."""
    if "image_plan" not in ctx.state:
        ctx.state["image_plan"] = plan_images(engine(ctx), list(getattr(ctx.options, "keep_images", []) or []))
    return ctx.state["image_plan"]


def plan_images(client, keep_refs: list[str]) -> tuple[list[dict], list[dict]]:
    """(remove, keep) rows; BadInput when a --keep-image names no image (nothing removed yet)."""
    images = client.api.images()
    keep, missing = {}, []
    for ref in keep_refs:
        hits = [img for img in images if image_matches(ref, img)]
        if not hits:
            missing.append(ref)
        for img in hits:
            keep.setdefault(img["Id"], {**_image_row(img), "refs": []})["refs"].append(ref)
    if missing:
        raise BadInput(f"--keep-image {', '.join(missing)}: no such image on the Engine",
                       "name images by tag, digest or id as `docker images --digests` shows them; nothing was removed")
    remove = [_image_row(img) for img in images if img["Id"] not in keep]
    order = (lambda r: (r["tags"][0] if r["tags"] else "~", r["id"]))
    return sorted(remove, key=order), sorted(keep.values(), key=order)


def remove_image(api, row: dict) -> None:
    """Remove one planned image; an image already gone counts as removed."""
    # By tag where tagged: an image that is also the parent of a kept image loses its tags and stays as a
    # layer; removing it by id would fail ("image has dependent child images").
    for ref in row["tags"] or [row["id"]]:
        try:
            api.remove_image(ref, force=True)
        except Exception as exc:
            if _api_status(exc) != 404:
                raise


class ImagesStep(Step):
    id = "images"
    title = "remove every image except those named by --keep-image (reported with digest and size)"

    def plan(self, ctx: Context) -> Change | Converged:
        remove, keep = image_plan(ctx)
        kept = [{k: r[k] for k in ("refs", "id", "tags", "digests", "size")} for r in keep]
        ctx.state["kept_images"] = kept
        kept_lines = [_image_line(r, "keep") for r in keep]
        kept_note = f"; kept {len(keep)}" if keep else ""
        if not remove:
            return Converged(f"no images to remove{kept_note}", data={"kept": kept, "lines": kept_lines})
        lines = [_image_line(r) for r in remove] + kept_lines
        return Change(f"remove {len(remove)} images{kept_note}",
                      commands=[["docker", "rmi", "--force", "<each image>"]],
                      data={"remove": remove, "kept": kept, "lines": lines}, payload=remove)

    def apply(self, ctx: Context, change: Change) -> str | None:
        # Images the containers step removed already (as their containers went) are done; refusals are
        # tried again here, with the rest.
        early = ctx.state.pop("images_early", {})
        pending = [r for r in change.payload if r["id"] not in early or early[r["id"]] is not None]
        failed: list[tuple[dict, BaseException]] = []
        if pending:
            with removal_api(ctx) as api:
                # A parent image can only go after its children: retry conflicts while each round makes progress.
                for _ in range(5):
                    failed = [(r, e) for r, e in _parallel(lambda row: remove_image(api, row), pending)
                              if e is not None]
                    if not failed or len(failed) == len(pending):
                        break
                    pending = [r for r, _ in failed]
        ctx.state["seal_removed"] = True
        if failed:
            detail = "; ".join(f"{', '.join(r['tags']) or _short_id(r['id'])}: {_engine_said(e)}"
                               for r, e in failed[:3])
            raise StepFailed(f"could not remove {len(failed)} of {len(change.payload)} images: {detail}",
                             "an image in use by a container stays until the container goes "
                             "(run seal without --skip containers), then run seal again")
        return None


# -- stop-ecs -----------------------------------------------------------------------------
def _ecs_init_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["name", "exe", "status"]):
        name = proc.info.get("name") or ""
        exe = proc.info.get("exe") or ""
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue  # exited, only not reaped yet: it runs nothing
        if name in ("amazon-ecs-init", "ecs-init") or exe.endswith("/amazon-ecs-init"):
            pids.append(proc.pid)
    return pids


def _agent_running(ctx: Context) -> bool | None:
    """Whether the agent container runs; None when no Engine answers (then it cannot run either)."""
    try:
        client = engine(ctx)
    except (Skip, StepFailed):
        return None
    return bool(client.api.containers(filters={"name": f"^/{ecs.AGENT_CONTAINER}$", "status": "running"}))


class StopEcsStep(Step):
    id = "stop-ecs"
    title = "stop ECS (ecs-init and the ecs-agent container) through the init system; leave it enabled"

    def plan(self, ctx: Context) -> Change | Converged:
        host = ctx.host
        if not host.live:
            raise Skip("ECS does not run inside --root (an agent container there goes with `containers`)")
        name = ecs.ecs_service(ctx.platform)
        svc = ecs.services(host, ctx.platform)
        state = svc.state(name)
        init_pids = _ecs_init_pids()
        agent = _agent_running(ctx)
        enabled = "enabled" if state.is_enabled else state.enabled
        if not state.running and not init_pids and not agent:
            if state.enabled == "not-found":
                return Converged(f"{name} is not installed; no agent container running")
            return Converged(f"{name} is stopped ({enabled} for the next boot)")
        commands = []
        if state.running or init_pids:
            # ecs-init's own stop (ExecStop / the upstart job) runs `docker stop ecs-agent`.
            commands.append(svc.argv("stop", name))
        elif agent:
            commands.append(["docker", "stop", ecs.AGENT_CONTAINER])
        return Change(f"stop {name} and wait until neither ecs-init nor {ecs.AGENT_CONTAINER} runs",
                      commands=commands, payload=state)

    def apply(self, ctx: Context, change: Change) -> StepResult:
        from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

        host = ctx.host
        name = ecs.ecs_service(ctx.platform)
        svc = ecs.services(host, ctx.platform)
        ran: list[list[str]] = []  # what this run did, for the report (not what the plan guessed)
        if any(argv[:1] != ["docker"] for argv in change.commands):
            ran.append(svc.argv("stop", name))
            svc.stop(name)
        if _agent_running(ctx):
            # ecs-init's own stop runs `docker stop ecs-agent`; an agent left running (ecs-init killed,
            # or started by hand) gets the same.
            ran.append(["docker", "stop", ecs.AGENT_CONTAINER])
            engine(ctx).api.stop(ecs.AGENT_CONTAINER, timeout=30)

        def still_running() -> list[str]:
            left = []
            if svc.state(name).running:
                left.append(f"{name} service")
            if _ecs_init_pids():
                left.append("ecs-init")
            if _agent_running(ctx):
                left.append(f"container {ecs.AGENT_CONTAINER}")
            return left

        log.info("waiting up to %ds for ecs-init and the %s container to stop", ECS_STOP_TIMEOUT, ecs.AGENT_CONTAINER)
        retrying = Retrying(stop=stop_after_delay(ECS_STOP_TIMEOUT), wait=wait_fixed(0.5),
                            retry=retry_if_result(bool), retry_error_callback=lambda rs: rs.outcome.result())
        left = retrying(still_running)
        if left:
            raise StepFailed(f"still running after {ECS_STOP_TIMEOUT}s: {', '.join(left)}",
                             f"see `journalctl -u {name}` and `docker ps`; stop them, then run seal again")
        state = svc.state(name)
        if state.enabled in ("not-found", "unknown"):
            summary = f"{ecs.AGENT_CONTAINER} stopped; no {name} service to leave enabled here"
        else:
            note = "still enabled for the next boot" if state.is_enabled else (
                f"NOT enabled ({state.enabled}): instances from the image will not start it; "
                "run `gpuprep install --only ecs-config`")
            summary = f"{name} stopped; {note}"
        return StepResult(self.id, StepStatus.CHANGED, summary, commands=ran, data=change.data)


# -- preflight ----------------------------------------------------------------------------
def _selected(ctx: Context, step_id: str) -> bool:
    def ids(values) -> set[str]:
        return {v.strip() for value in values or [] for v in value.split(",") if v.strip()}

    only, skip = ids(getattr(ctx.options, "only", [])), ids(getattr(ctx.options, "skip", []))
    return (not only or step_id in only) and step_id not in skip


def _asks(ctx: Context) -> bool:
    """Whether seal asks before removing: a terminal, no --yes, and a real run."""
    return ctx.interactive and not getattr(ctx.options, "yes", False) and not ctx.dry_run


class SealPreflightStep(Step):
    id = "preflight"
    title = "root, a known platform, --keep-image names real images; on a terminal, confirm what goes"

    def plan(self, ctx: Context) -> Change | Converged:
        host, platform = ctx.host, ctx.platform
        if not host.is_root:
            raise PreconditionUnmet("seal needs root: it stops services and removes files owned by root",
                                    "run it as root (sudo gpuprep seal)")
        # seal.json is written last: a directory or FIFO there must stop seal before anything is removed.
        host.read_bytes(SEAL_JSON, limit=1 << 20)
        if platform.family == "unknown":
            raise PreconditionUnmet(f"{platform.reason or 'unknown platform'}",
                                    "seal runs on Amazon Linux 1/2/2023 or RHEL-family 7-9 (Ubuntu accepted)")
        where = platform.name if platform.rpm else \
            f"{platform.name} (not an ECS-optimized RPM platform; sealing anyway)"
        preview = self._preview(ctx)
        if _asks(ctx):
            self._confirm(preview)
            return Converged(f"running as root on {where}; confirmed")
        return Converged(f"running as root on {where}")

    def _preview(self, ctx: Context) -> list[str]:
        """What the selected steps would remove; validates --keep-image before anything goes."""
        interactive = _asks(ctx)
        lines: list[str] = []
        for step in seal_steps()[1:]:
            if not _selected(ctx, step.id) or step.id == "stamp":
                continue
            if not interactive and (step.id != "images" or not getattr(ctx.options, "keep_images", None)):
                continue  # no one to ask: only --keep-image needs checking before anything goes
            try:
                planned = step.plan(ctx)
            except (Skip, StepFailed):
                continue  # the step itself will report it
            if isinstance(planned, Change):
                lines.append(f"{step.id}: {planned.summary}")
                body = planned.data.get("lines") or [" ".join(c) for c in planned.commands]
                lines += [f"    {line}" for line in body[:PREVIEW_LINES]]
                if len(body) > PREVIEW_LINES:
                    lines.append(f"    ... and {len(body) - PREVIEW_LINES} more (--dry-run lists them all)")
        return lines

    def _confirm(self, preview: list[str]) -> None:
        import typer

        if not preview:
            return
        # On stderr, the terminal's too: with --json, stdout carries the one JSON object and nothing else.
        typer.echo("gpuprep seal will remove:", err=True)
        for line in preview:
            typer.echo(f"  {line}", err=True)
        if not typer.confirm("Go ahead?", default=False, err=True):
            raise StepFailed("aborted, nothing removed", "run again and answer yes, or pass --yes")


# -- stamp --------------------------------------------------------------------------------
def stamp_packages() -> tuple[str, ...]:
    """The names install selects among (ecs-init, Docker, either NVIDIA stack): whichever are installed."""
    from gpuprep.packages.resolve import QUERY_NAMES

    return tuple(QUERY_NAMES)


def driver_version(host: Host) -> str | None:
    """The loaded kernel module's version, else nvidia-smi's (live only), else None."""
    from gpuprep.gpu.devices import parse_module_version

    version, _ = parse_module_version(host.read_text(NVIDIA_VERSION_FILE) or "")
    if version:
        return version
    if host.live and host.which("nvidia-smi"):
        try:
            out = host.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=15)
        except CommandError:
            return None
        first = out.stdout.strip().splitlines()
        return first[0].strip() if first else None
    return None


# The types of the seal.json fields gpuprep reads back (doctor's checks, the next seal's stamp).
SEAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "gpuprep": str, "sealed_at": str, "platform": dict, "packages": dict, "driver_version": (str, type(None)),
    "kept_images": list, "boot": dict,
}


def read_seal(host: Host) -> dict | None:
    return _parse_seal(host.read_text(SEAL_JSON))


def _parse_seal(text: str | None) -> dict | None:
    """seal.json's object; None when absent or unreadable (a later seal rewrites it). Fields of the wrong
    type are dropped, so every reader can trust the type of what it finds."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return {k: v for k, v in doc.items() if k not in SEAL_TYPES or isinstance(v, SEAL_TYPES[k])}


class StampStep(Step):
    id = "stamp"
    title = "write /etc/gpuprep/seal.json: version, time, platform, packages, driver, kept images"

    def plan(self, ctx: Context) -> Change | Converged:
        import difflib

        from gpuprep import __version__

        host = ctx.host
        old = host.read_text(SEAL_JSON)
        existing = _parse_seal(old)
        if "kept_images" in ctx.state:
            kept = ctx.state["kept_images"]
        elif existing is not None and "kept_images" in existing:
            kept = existing["kept_images"]  # the images step did not run: what the last seal kept
        else:
            kept = [{"refs": [r]} for r in getattr(ctx.options, "keep_images", []) or []]
        p = ctx.platform
        doc: dict[str, Any] = {
            "gpuprep": __version__,
            "platform": {"id": p.id, "version_id": p.version_id, "name": p.name},
            "packages": ecs.rpm_installed(host, stamp_packages()),
            "driver_version": driver_version(host),
            "kept_images": kept,
        }
        boot = host.boot_identity()
        if boot is not None:
            doc["boot"] = boot  # doctor tells a host booted from the image from the builder by this
        same = existing is not None and all(existing.get(k) == v for k, v in doc.items()) and "sealed_at" in existing
        if same and not ctx.state.get("seal_removed"):
            return Converged(f"{SEAL_JSON} up to date (sealed {existing['sealed_at']})", data=existing)
        new = {"gpuprep": doc["gpuprep"], "sealed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               **{k: v for k, v in doc.items() if k != "gpuprep"}}
        text = json.dumps(new, indent=2) + "\n"
        diff = "".join(difflib.unified_diff((old or "").splitlines(keepends=True), text.splitlines(keepends=True),
                                            fromfile=SEAL_JSON if old is not None else "/dev/null", tofile=SEAL_JSON))
        return Change(f"{'write' if old is None else 'update'} {SEAL_JSON}", diff=diff, data={"seal": new},
                      payload=text)

    def apply(self, ctx: Context, change: Change) -> str | None:
        ctx.host.write_atomic(SEAL_JSON, change.payload, mode=0o644)
        return None


def seal_steps() -> list[Step]:
    """In docs/contract.md's order; ids never change meaning."""
    return [
        SealPreflightStep(),
        StopEcsStep(),
        ContainersStep(),
        ImagesStep(),
        EcsStateStep(),
        GpuInfoStep(),
        DeepCleanStep(),
        StampStep(),
    ]
