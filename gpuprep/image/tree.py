"""What to remove from the image, found without following links, and the step shape that removes it.

Deletion never leaves the declared paths: every candidate is found by walking real directories (never
through a symlink), removed with ``lstat`` semantics (a symlink goes as a link, its target untouched) and
its parent is re-checked right before removal. ``--dry-run`` lists exactly what a real run removes,
because both come from the same ``plan``."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gpuprep.host import Host
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step

log = logging.getLogger("gpuprep")

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


def declared_base(host: Host, base: str) -> Path | None:
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
    real_base = declared_base(host, base)
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


def truncate_items(host: Host, logs: Iterable[str]) -> list[Item]:
    """An item emptying each of ``logs`` that is a non-empty regular file (a link is never followed); its base is
    the log's own directory."""
    items = []
    for log in logs:
        real = host.path(log, follow=False)
        if real.is_file() and not real.is_symlink() and real.stat().st_size > 0:
            items.append(Item("truncate", log, "file", log.rsplit("/", 1)[0] or "/"))
    return items


def execute(host: Host, item: Item) -> bool:
    """Carry out one item; False when it was already gone. Links are unlinked, never followed.

    ``Host.remove`` walks from the declared base to the item without following a link and removes
    relative to the directory it holds open: a directory swapped for a link since planning stops the
    removal (TreeChanged) instead of redirecting it.
    """
    return host.remove(item.path, base=item.base, truncate=item.action == "truncate")


class FileStep(Step[list[Item]]):
    """A step that removes (or truncates) a planned list of items; dry-run and real run share the list."""

    what = "files"

    def items(self, ctx: Context) -> list[Item]:
        raise NotImplementedError

    def nothing(self, ctx: Context) -> str:
        return f"no {self.what} to remove"

    def plan(self, ctx: Context) -> Change[list[Item]] | Converged:
        items = self.items(ctx)
        if not items:
            return Converged(self.nothing(ctx))
        lines = [i.line() for i in items]
        n_trunc = sum(i.action == "truncate" for i in items)
        n_rm = len(items) - n_trunc
        parts = [f"remove {n_rm} {self._noun(n_rm)}"] if n_rm else []
        if n_trunc:
            parts.append(f"truncate {n_trunc} {'file' if n_trunc == 1 else 'files'}")
        return Change(", ".join(parts), data={"remove": [i.as_dict() for i in items]}, lines=lines,
                      payload=items)

    def _noun(self, n: int) -> str:
        return "item" if n == 1 else "items"

    def apply(self, ctx: Context, change: Change[list[Item]]) -> Applied:
        done = sum(execute(ctx.host, item) for item in change.payload)
        gone = len(change.payload) - done
        return Applied(change.summary + (f" ({gone} already gone)" if gone else ""))
