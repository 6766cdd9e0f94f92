"""The Engine's containers and images as seal sees them: the client, the rows, the order of removal and
the parallel remover."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from gpuprep import hints
from gpuprep.engine.dockerd import EngineDown
from gpuprep.errors import BadInput
from gpuprep.runner.needs import ENGINE
from gpuprep.runner.steps import Context, Skip

if TYPE_CHECKING:
    from docker import APIClient, DockerClient

log = logging.getLogger("gpuprep")

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


@dataclass
class SealEngineRun:
    """What seal's Engine steps share in one run (``ctx.shared(SealEngineRun)``)."""

    client: DockerClient | None = None  # the docker-py client, pinged once: every step of seal asks for it
    # (remove, keep) rows, planned before any removal
    image_plan: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
    images_early: dict[str, BaseException | None] = field(default_factory=dict)  # removed during containers
    kept_images: list[dict[str, Any]] | None = None  # the images step's kept rows, for the stamp


# -- the Docker Engine --------------------------------------------------------------------
def engine(ctx: Context) -> DockerClient:
    """The docker-py client, pinged; Skip with --root and no DOCKER_HOST (the steps that need it declare ENGINE, and the
    runner skips them first: this is for a step that only may ask, as seal's preflight); EngineDown when it is down."""
    host = ctx.host
    url = host.docker_url
    if url is None:
        raise Skip(ENGINE.reason)
    run = ctx.shared(SealEngineRun)
    if run.client is not None:
        return run.client
    try:
        client = host.docker(timeout=60)  # pings the Engine once, to learn its API version
    except Exception as exc:  # docker-py lets requests' ConnectionError through when the socket is dead
        start = hints.service(host, ctx.platform, "start", ctx.platform.docker_service)
        hint = (f"start it (`{start}`), or leave the Docker steps out with --skip containers,images" if host.live else
                f"check that DOCKER_HOST={url} names a running Engine, or unset DOCKER_HOST to skip the Docker steps")
        raise EngineDown.said(url, exc, hint) from None
    run.client = client
    return client


@contextlib.contextmanager
def removal_api(ctx: Context) -> Iterator[APIClient]:
    """A low-level client with a connection pool as wide as the removal threads, closed afterwards."""
    import docker

    client, url = engine(ctx), ctx.host.docker_url
    assert url is not None  # engine() raised Skip otherwise
    api = docker.APIClient(base_url=url, version=client.api.api_version, timeout=REMOVAL_TIMEOUT,
                           max_pool_size=DOCKER_WORKERS + IMAGE_WORKERS)
    if url.startswith("unix:"):
        # A unix socket has no proxy and no netrc: without this, requests looks both up for every removal.
        api.trust_env = False
    try:
        yield api
    finally:
        api.close()


T = TypeVar("T")


def parallel(fn: Callable[[T], object], items: Iterable[T]) -> list[tuple[T, Exception | None]]:
    items = list(items)
    if not items:
        return []

    def run(item: T) -> tuple[T, Exception | None]:
        try:
            fn(item)
            return item, None
        except Exception as exc:
            return item, exc

    with ThreadPoolExecutor(max_workers=min(DOCKER_WORKERS, len(items)), thread_name_prefix="seal") as pool:
        return list(pool.map(run, items))


def api_status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def engine_said(exc: BaseException) -> str:
    """The Engine's own words for a refused call (docker-py's APIError.explanation), not the URL first."""
    return str(getattr(exc, "explanation", None) or exc).strip()[:200]


def short_id(id_: str) -> str:
    return id_.split(":", 1)[-1][:12]


def human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def removal_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Running containers first, then the others; within each, containers of one image together.

    Every layer the Engine removes makes it read the whole mount table (``RecursiveUnmount``), and the
    kernel writes out each mounted overlay's options for every read: that is the Engine's largest
    avoidable cost here. Only running containers have an overlay mounted, so once they have gone the
    stopped containers' and the images' layers are removed against a short table. Containers of one
    image next to each other let the image go early instead of at the very end.
    """
    return sorted(rows, key=lambda r: (r.get("state") != "running", r.get("image_id", ""), r["name"]))


# -- images -------------------------------------------------------------------------------
def normal_repo(repo: str) -> str:
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return repo[len("library/"):] if repo.startswith("library/") else repo


def normal_tag(ref: str) -> str:
    repo, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        repo, tag = ref[:colon], ref[colon + 1:]
    return f"{normal_repo(repo)}:{tag}"


def image_matches(ref: str, image: dict[str, Any]) -> bool:
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
        return any(normal_repo(d.split("@", 1)[0]) == normal_repo(repo) and d.split("@", 1)[1] == digest
                   for d in digests)
    return normal_tag(ref) in {normal_tag(t) for t in tags}


def image_row(img: dict[str, Any]) -> dict[str, Any]:
    tags = sorted(t for t in img.get("RepoTags") or [] if t != "<none>:<none>")
    digests = sorted(d for d in img.get("RepoDigests") or [] if "@" in d)
    return {"kind": "image", "id": img["Id"], "tags": tags, "digests": digests, "size": img.get("Size")}


def image_line(row: dict[str, Any], verb: str = "image") -> str:
    names = ", ".join(row["tags"]) or "<untagged>"
    digests = row.get("digests") or []
    digest = f", {digests[0]}" + (f" (+{len(digests) - 1} more)" if len(digests) > 1 else "") if digests else ""
    if verb == "keep" and not digests:
        # Only a pull or a push gives an image a registry digest; the id is its content digest.
        digest = ", no registry digest: built or imported here"
    return f"{verb} {names} ({short_id(row['id'])}{digest}, {human(row.get('size'))})"


def image_plan(ctx: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``plan_images`` once per run, before anything is removed: the preview, the containers step (which
    starts removing images as their containers go) and the images step all see the same lists."""
    run = ctx.shared(SealEngineRun)
    if run.image_plan is None:
        run.image_plan = plan_images(engine(ctx), list(ctx.seal_options.keep_images))
    return run.image_plan


def plan_images(client: DockerClient, keep_refs: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(remove, keep) rows; BadInput when a --keep-image names no image (nothing removed yet)."""
    images = client.api.images()
    keep: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for ref in keep_refs:
        hits = [img for img in images if image_matches(ref, img)]
        if not hits:
            missing.append(ref)
        for img in hits:
            keep.setdefault(img["Id"], {**image_row(img), "refs": []})["refs"].append(ref)
    if missing:
        raise BadInput(f"--keep-image {', '.join(missing)}: no such image on the Engine",
                       "name images by tag, digest or id as `docker images --digests` shows them; nothing was removed")
    remove = [image_row(img) for img in images if img["Id"] not in keep]
    order = (lambda r: (r["tags"][0] if r["tags"] else "~", r["id"]))
    return sorted(remove, key=order), sorted(keep.values(), key=order)


def remove_image(api: APIClient, row: dict[str, Any]) -> None:
    """Remove one planned image; an image already gone counts as removed."""
    # By tag where tagged: an image that is also the parent of a kept image loses its tags and stays as a
    # layer; removing it by id would fail ("image has dependent child images").
    for ref in row["tags"] or [row["id"]]:
        try:
            api.remove_image(ref, force=True)
        except Exception as exc:
            if api_status(exc) != 404:
                raise
