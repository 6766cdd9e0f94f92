"""The house rules of gpuprep's source tree (issue 13), checked on the source itself."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SOURCES = sorted([*(REPO / "gpuprep").rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py"),
                  *(REPO / "packaging").rglob("*.py")])


def test_citations_name_documents_of_this_repository():
    """A comment that cites a document someone who clones gpuprep cannot open is no citation: the domain
    and test-bed facts live in docs/, and every docs/ file cited exists."""
    outside, missing = [], []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        outside += [f"{rel}: {m}" for m in re.findall(r"\b(?:DOMAIN|TESTBED|DESIGN|STYLE)(?:\.md\b| \d)", text)]
        missing += [f"{rel}: {m}" for m in set(re.findall(r"\bdocs/[\w./-]+\.md\b", text)) if not (REPO / m).is_file()]
    assert not outside, f"citations of documents outside the repository: {outside[:10]}"
    assert not missing, f"citations of docs/ files that do not exist: {missing[:10]}"


PACKAGE = REPO / "gpuprep"


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every gpuprep module and the gpuprep modules it imports, deferred imports (inside functions, under
    TYPE_CHECKING) included: a cycle that works only because one edge is deferred is still a cycle."""
    import ast

    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            # `from gpuprep import rootfs` is an import of gpuprep.rootfs; gpuprep/__init__.py itself is empty
            graph[name] |= {t for t in targets if t in modules and t != "gpuprep" and t != name}
    return graph


def test_no_import_cycle_in_gpuprep():
    graph = import_graph()
    assert "gpuprep.runner.checks" in graph and graph["gpuprep.doctor"], "the graph is not gpuprep's"
    cycles = [" -> ".join(loop) for loop in find_cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The cycles a depth-first walk of ``graph`` meets, each as the path that closes it (first node last again)."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _room(module: str) -> str:
    """The room of a module: its folder under gpuprep/ (``gpuprep.engine.steps`` -> ``engine``); a top-level module
    (a command, a mechanism) is a room of its own."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def room_graph() -> dict[str, dict[str, str]]:
    """Each room and the rooms it imports, with one module-level import that makes each edge (for the message)."""
    rooms: dict[str, dict[str, str]] = {}
    for module, targets in import_graph().items():
        for target in sorted(targets):
            a, b = _room(module), _room(target)
            if a != b:
                rooms.setdefault(a, {}).setdefault(b, f"{module} -> {target}")
    return rooms


def test_the_rooms_import_each_other_without_a_cycle():
    """A cycle between two rooms is a fact of one living in the other (issue 27: Docker's CDI facts in toolkit/ while
    toolkit/ configures the Engine; the security floor in toolkit/ while packages/ resolves on it; gpu/ reading
    ecs-init's file): the module-level test misses it when different modules make the two edges."""
    rooms = room_graph()
    assert {"engine", "toolkit", "packages", "gpu", "ec2", "ecs"} <= set(rooms), "the graph is not gpuprep's rooms"
    cycles = ["; ".join(rooms[a][b] for a, b in zip(loop, loop[1:])) for loop in find_cycles(rooms)]
    assert not cycles, "import cycles between rooms:\n" + "\n".join(cycles)


def _checks_modules() -> set[str]:
    """The modules that define doctor's checks (a top-level ``CHECKS``), found in the source, not by importing."""
    import ast

    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "CHECKS" in
               [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Name)] for node in tree.body):
            found.add(_module(path))
    return found


def test_no_room_reads_another_rooms_checks_module():
    """What a check of another room needs is a probe or a fact, and lives in a probe or fact module of its room
    (engine/probes.py, ec2/probes.py, packages/probes.py, engine/cdi.py, ...): a checks module is doctor's to list, and
    one room's checks never steer another's (issue 27)."""
    checks = _checks_modules()
    assert {"gpuprep.engine.checks", "gpuprep.gpu.checks", "gpuprep.ecs.checks"} <= checks
    wrong = [f"{m} -> {t}" for m, targets in sorted(import_graph().items()) if m.count(".") >= 2
             for t in sorted(targets) if t in checks and _room(t) != _room(m)]
    assert not wrong, f"modules reading another room's checks module: {wrong}"


def test_only_the_runner_makes_probes():
    """A step that builds doctor's ``Probes`` to reuse a helper (issue 27: ``Probes(host, platform, None)``) reads
    through a memo it does not own; helpers a step and a check share take the Host."""
    import ast

    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Probes":
                makers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert [m.split(":")[0] for m in makers] == ["gpuprep/runner/checks.py"], makers


def test_the_mechanisms_import_no_domain():
    """runner/, host, rootfs, errors, options, report, platform, services, hints: what every domain builds on.
    None of them reaches into a domain (gpu/, engine/, ecs/, packages/, image/) or a command."""
    mechanisms = {m for m in import_graph() if m.startswith("gpuprep.runner") or m in {
        "gpuprep.host", "gpuprep.rootfs", "gpuprep.dockersock", "gpuprep.procfs", "gpuprep.errors",
        "gpuprep.options", "gpuprep.report", "gpuprep.platform", "gpuprep.services", "gpuprep.hints",
        "gpuprep.poll"}}
    domains = ("gpuprep.gpu", "gpuprep.ec2", "gpuprep.engine", "gpuprep.ecs", "gpuprep.packages", "gpuprep.image",
               "gpuprep.toolkit")
    commands = ("gpuprep.install", "gpuprep.seal", "gpuprep.doctor", "gpuprep.cli")
    graph = import_graph()
    wrong = [f"{m} -> {t}" for m in sorted(mechanisms) for t in sorted(graph[m]) if t.startswith(domains + commands)]
    assert not wrong, f"mechanism modules importing domains or commands: {wrong}"


def test_hosts_halves_are_reached_through_host_alone():
    """dockersock (a GET on the Engine's socket without docker-py) and procfs (the process table from /proc
    without psutil) are parts of Host: no other module imports them."""
    graph = import_graph()
    for half in ("gpuprep.dockersock", "gpuprep.procfs"):
        assert sorted(m for m, targets in graph.items() if half in targets) == ["gpuprep.host"], half


def test_file_sizes():
    """No file of gpuprep over 600 lines; the three commands only list their steps or checks."""
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert not {f: n for f, n in sizes.items() if n > 600}
    for command in ("gpuprep/install.py", "gpuprep/seal.py", "gpuprep/doctor.py"):
        assert sizes[command] < 150, f"{command}: {sizes[command]} lines"


# What acts on the system: only Host (host.py, with rootfs.py, its file half, and procfs.py, its reader of the
# process table) does it. A pattern is a call,
# not a mention in prose.
EFFECTS = re.compile(r"\bos\.(unlink|remove|rmdir|kill|replace|rename|open|truncate)\(|\bshutil\.(rmtree|move)\("
                     r"|^\s*(import subprocess|from subprocess import)|\bsubprocess\.|^\s*import psutil|\bpsutil\."
                     r"|(?<![\w.])open\(", re.M)


def test_every_effect_on_the_system_goes_through_host():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        # stdio.py: the process's own descriptors 0-2 (closed ones pointed at /dev/null), not the system.
        if rel in ("gpuprep/host.py", "gpuprep/rootfs.py", "gpuprep/procfs.py", "gpuprep/stdio.py"):
            continue
        # version.py asks git about gpuprep's own checkout (build time, source checkouts), never about the target;
        # setup.py loads it on its own, before gpuprep's dependencies exist, so Host is not there to use.
        if rel == "gpuprep/version.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if EFFECTS.search(code) and not code.strip().startswith(('"', "'")):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "effects outside Host:\n" + "\n".join(found)


def test_a_unit_test_cannot_start_a_program_or_send_a_signal_it_did_not_ask_for():
    """The autouse fixture of tests/conftest.py, proven on itself: no marker, no program, no signal."""
    import os
    import signal
    import subprocess

    import pytest

    from gpuprep.host import Host

    with pytest.raises(AssertionError, match=r"unit test started 'true'"):
        subprocess.run(["true"], check=False)
    with pytest.raises(AssertionError, match=r"unit test started 'systemctl'"):
        Host("/").run(["systemctl", "daemon-reload"], check=False)
    with pytest.raises(AssertionError, match="without @pytest.mark.allow_signals"):
        os.kill(os.getpid(), signal.SIGCONT)


def test_every_bounded_wait_goes_through_poll_until():
    """Issue 27: one way to wait. Only gpuprep/poll.py sleeps (``poll_until`` re-checks a condition, backs off, is
    bounded and says what it waits for); no other module calls ``time.sleep`` or retries with tenacity."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel == "gpuprep/poll.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tenacity":
                found.append(f"{rel}:{node.lineno}: imports tenacity")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tenacity" for a in node.names):
                found.append(f"{rel}:{node.lineno}: imports tenacity")
            elif isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio") and \
                    any(a.name == "sleep" for a in node.names):
                found.append(f"{rel}:{node.lineno}: imports sleep")
            elif isinstance(node, ast.Attribute) and node.attr == "sleep" and \
                    isinstance(node.value, ast.Name) and node.value.id in ("time", "asyncio"):
                found.append(f"{rel}:{node.lineno}: {node.value.id}.sleep")
    assert not found, "waits outside gpuprep/poll.py (use poll_until):\n" + "\n".join(found)
    assert "time.sleep" in (PACKAGE / "poll.py").read_text(encoding="utf-8"), "the test no longer sees the one sleep"
