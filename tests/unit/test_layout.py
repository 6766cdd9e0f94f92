"""The house rules of gpuprep's source tree (issue 13), checked on the source itself."""

from __future__ import annotations

import re
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
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


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
