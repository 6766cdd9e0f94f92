"""What gpuprep knows of the world, as data: one JSON table per subject, each with its sources and ``as_of`` date.

The tables ship in ``data/`` (``toolkit-security``, ``driver-security``, ``dcgm-security``, ``xid``,
``ec2-gpu-instances``, ``docker-cdi``), all valid against ``schema/knowledge.schema.json``. A fleet brings one up
to date without a release by dropping a newer table into ``/etc/gpuprep/knowledge.d/`` (inside ``--root`` when
given): a file there is read only when it is a regular file owned by root and writable by nobody else, valid
against the schema, and not dated in the future; its table replaces the shipped one when its ``as_of`` is newer.
Anything else is refused in one line and the table in use stays. ``gpuprep knowledge`` lists what is in use;
doctor's ``knowledge-age`` and ``knowledge-files`` checks say when it is old or a file was refused.

The command line loads the knowledge of its target once (``activate(load(host))``); code that needs a fact asks
``current()``, whose default is the shipped tables.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprep.knowledge import schema

if TYPE_CHECKING:
    from gpuprep.host import Host

log = logging.getLogger("gpuprep")

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SCHEMA = HERE / "schema" / "knowledge.schema.json"
KNOWLEDGE_D = "/etc/gpuprep/knowledge.d"
MAX_FILE_BYTES = 1 << 20  # a table is a few KiB; the bound guards a mistaken file (a log, an image)
SHIPPED = "shipped"

# What each table's rows are keyed by: a key seen twice is refused (the second row would silently lose).
ROW_KEY = {"toolkit-security": "bulletin", "driver-security": "bulletin", "dcgm-security": "bulletin",
           "xid": "code", "ec2-gpu-instances": "family", "docker-cdi": "feature"}


class KnowledgeInvalid(Exception):
    """A table file gpuprep will not use; ``reason`` is one line naming the problem."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Table:
    name: str
    as_of: dt.date
    doc: dict[str, Any]
    origin: str  # SHIPPED, or the path of the knowledge.d file as the target system names it

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.doc["rows"]  # the schema has it so (load validates each table)
        return rows

    def age_days(self, today: dt.date | None = None) -> int:
        return ((today or dt.date.today()) - self.as_of).days

    def as_dict(self, today: dt.date | None = None) -> dict[str, Any]:
        return {"table": self.name, "as_of": self.as_of.isoformat(), "age_days": self.age_days(today),
                "origin": self.origin, "rows": len(self.rows), "sources": self.doc["sources"]}


@dataclass(frozen=True)
class Refused:
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: refused, {self.reason}"


@dataclass
class Knowledge:
    tables: dict[str, Table]
    refused: list[Refused] = field(default_factory=list)
    older: list[str] = field(default_factory=list)  # valid knowledge.d files passed over: not newer

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def newest(self) -> Table:
        return max(self.tables.values(), key=lambda t: t.as_of)

    def oldest(self) -> Table:
        return min(self.tables.values(), key=lambda t: t.as_of)


def today() -> dt.date:
    return dt.date.today()


@functools.lru_cache(maxsize=1)
def schema_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SCHEMA.read_text())  # a JSON Schema is an object
    return doc


def parse(text: str | bytes, path: str, *, now: dt.date | None = None) -> Table:
    """A table file's content -> Table, or KnowledgeInvalid saying what is wrong in one line."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KnowledgeInvalid(path, f"not JSON ({exc})") from None
    try:
        schema.validate(doc, schema_document())
    except schema.Invalid as exc:
        raise KnowledgeInvalid(path, f"not a valid knowledge table: {exc}") from None
    try:
        as_of = dt.date.fromisoformat(doc["as_of"])
    except ValueError:
        raise KnowledgeInvalid(path, f"as_of {doc['as_of']} is not a date") from None
    if as_of > (now or today()) + dt.timedelta(days=1):
        raise KnowledgeInvalid(path, f"as_of {as_of} is in the future: a typo would win over every later table")
    _check_rows(doc, path)
    return Table(doc["table"], as_of, doc, path)


def _check_rows(doc: dict[str, Any], path: str) -> None:
    """What a schema cannot say: keys unique, EFA only for sizes the family has, every Engine feature there."""
    key = ROW_KEY[doc["table"]]
    seen: set[Any] = set()
    for row in doc["rows"]:
        if row[key] in seen:
            raise KnowledgeInvalid(path, f"{key} {row[key]} is listed twice")
        seen.add(row[key])
        extra = set(row.get("efa", {})) - set(row.get("sizes", {}))
        if extra:
            raise KnowledgeInvalid(path, f"{row[key]}: efa names size(s) {', '.join(sorted(extra))} not in sizes")
    if doc["table"] == "docker-cdi":
        wanted = set(schema_document()["$defs"]["engine-feature"]["properties"]["feature"]["enum"])
        if seen != wanted:
            raise KnowledgeInvalid(path, "docker-cdi must list every feature: missing "
                                   + ", ".join(sorted(wanted - seen)))


@functools.lru_cache(maxsize=1)
def shipped() -> Knowledge:
    tables = {}
    for f in sorted(DATA.glob("*.json")):
        # No future check for what ships: a build dated ahead of the host's clock is not a typo in a drop-in.
        table = parse(f.read_bytes(), SHIPPED, now=dt.date.max - dt.timedelta(days=2))
        tables[table.name] = table
    return Knowledge(tables)


def read_dropin(host: Host, path: str) -> Table:
    """One knowledge.d file of the target: owner, mode, size, then content; KnowledgeInvalid otherwise."""
    from gpuprep.errors import GpuprepError

    try:
        real = host.path(path)
        st = os.stat(real)
    except GpuprepError as exc:  # a link leading out of --root
        raise KnowledgeInvalid(path, exc.message) from None
    except OSError as exc:
        raise KnowledgeInvalid(path, f"cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KnowledgeInvalid(path, "not a regular file")
    if st.st_uid != 0:
        raise KnowledgeInvalid(path, f"owned by uid {st.st_uid}, not root: `chown root:root {real}`")
    if st.st_mode & 0o022:
        raise KnowledgeInvalid(path, f"group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}): "
                               f"`chmod 0644 {real}`")
    if st.st_size > MAX_FILE_BYTES:
        raise KnowledgeInvalid(path, f"{st.st_size} bytes: larger than any table ({MAX_FILE_BYTES})")
    try:
        data = host.read_bytes(path, limit=MAX_FILE_BYTES + 1)
    except (OSError, GpuprepError) as exc:  # replaced by a FIFO, or removed, since the stat
        raise KnowledgeInvalid(path, f"cannot read it ({getattr(exc, 'message', None) or exc})") from None
    if data is None:
        raise KnowledgeInvalid(path, "removed while gpuprep read it")
    return parse(data, path)


def load(host: Host) -> Knowledge:
    """The shipped tables with the target's knowledge.d applied, table by table (newer as_of wins)."""
    base = shipped()
    tables, refused, older = dict(base.tables), [], []
    from gpuprep.errors import GpuprepError

    try:
        directory = host.path(KNOWLEDGE_D)
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except GpuprepError as exc:
        return Knowledge(tables, [Refused(KNOWLEDGE_D, exc.message)])
    except OSError:
        return Knowledge(tables)
    try:
        dst = os.stat(directory)
        if dst.st_uid != 0 or dst.st_mode & 0o022:
            reason = (f"the directory is owned by uid {dst.st_uid}, not root" if dst.st_uid != 0 else
                      f"the directory is group- or world-writable (mode {stat.S_IMODE(dst.st_mode):04o})")
            return Knowledge(tables, [Refused(f"{KNOWLEDGE_D}/{n}", reason) for n in names])
    except OSError:
        return Knowledge(tables)
    for name in names:
        path = f"{KNOWLEDGE_D}/{name}"
        try:
            table = read_dropin(host, path)
        except KnowledgeInvalid as exc:
            refused.append(Refused(path, exc.reason))
            continue
        if table.as_of > tables[table.name].as_of:
            tables[table.name] = table
        else:
            older.append(f"{path}: {table.name} as of {table.as_of}, not newer than the one in use "
                         f"({tables[table.name].as_of}, {tables[table.name].origin})")
    return Knowledge(tables, refused, older)


_LOCK = threading.Lock()
_CURRENT: list[Knowledge] = []
_TARGET: list[Host] = []


def use(host: Host) -> None:
    """The command acts on ``host``: ``current()`` loads its knowledge (once, when first asked)."""
    with _LOCK:
        _TARGET[:], _CURRENT[:] = [host], []


def activate(knowledge: Knowledge) -> Knowledge:
    """Make ``knowledge`` what ``current()`` answers for the rest of this command; say each refused file."""
    with _LOCK:
        _TARGET[:], _CURRENT[:] = [], [knowledge]
    _say_refused(knowledge)
    return knowledge


def reset() -> None:
    """Back to the shipped tables (tests: one command's target is not the next one's)."""
    with _LOCK:
        _TARGET[:], _CURRENT[:] = [], []


def _say_refused(knowledge: Knowledge) -> None:
    for r in knowledge.refused:
        log.warning("%s; the table in use is kept", r.line())


def current() -> Knowledge:
    with _LOCK:
        if _CURRENT:
            return _CURRENT[0]
        target = _TARGET[0] if _TARGET else None
    if target is None:
        return shipped()
    loaded = load(target)
    with _LOCK:
        if _CURRENT:  # another thread loaded it meanwhile
            return _CURRENT[0]
        _CURRENT[:] = [loaded]
    _say_refused(loaded)
    return loaded


def of(host: Host) -> Knowledge:
    """The knowledge of ``host``: what ``current()`` has when the command acts on it, else read afresh."""
    with _LOCK:
        same = bool(_TARGET) and _TARGET[0] is host
    return current() if same else load(host)


def table(name: str) -> Table:
    return current()[name]
