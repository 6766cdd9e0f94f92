"""The resolver against libsolv: dnf's real SAT depsolver is the oracle (docs/testbed.md 4).

Each case generates a repository (rpmbuild + createrepo_c) with the shapes of docs/domain.md: exact pins
(``docker = 18.09.2ce``), ranges from several Requires on one name, release-pinned requires
(``docker = 18.06.1ce-7.25.amzn1``), epochs (``docker-ce`` epoch 3 providing ``docker``). gpuprep
queries it through its own dnf backend (one repoquery), resolves, and then:
- when gpuprep selects, ``dnf install --assumeno`` of exactly the selection in a scratch installroot
  resolves (dnf answers "Operation aborted", not a dependency problem);
- when gpuprep finds no solution, dnf cannot install any ecs-init together with any nvidia-docker2.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, require, require_root
from rpmfixtures import PkgSpec, build_repo, repo_file

from gpuprep.host import Host
from gpuprep.packages.repo import DnfBackend
from gpuprep.packages.resolve import QUERY_NAMES, NoSolution, Selection, resolve
from gpuprep.platform import detect

DOCKERS = [("17.03.2ce", "1.59.amzn1"), ("17.06.2ce", "1.107.amzn1"), ("18.06.1ce", "7.25.amzn1"),
           ("18.06.1ce", "8.28.amzn1"), ("18.09.2ce", "1.amzn1"), ("20.10.7", "3.amzn2"), ("20.10.25", "1.amzn2")]


def docker_req(rng: random.Random, name: str = "docker") -> list[str]:
    v, r = rng.choice(DOCKERS)
    shape = rng.randrange(5)
    if shape == 0:
        return [f"{name} = {v}"]  # an exact pin without release: any release matches
    if shape == 1:
        return [f"{name} = {v}-{r}"]  # release-pinned (broke when Amazon rebuilt Docker)
    if shape == 2:
        return [f"{name} >= {v}"]
    lo, hi = sorted(rng.sample(DOCKERS, 2))
    return [f"{name} >= {lo[0]}", f"{name} <= {hi[0]}"]  # a range from two Requires on one name


def scenario(seed: int) -> list[PkgSpec]:
    rng = random.Random(seed)
    specs = [PkgSpec("docker", v, r) for v, r in rng.sample(DOCKERS, rng.randint(2, 4))]
    if rng.random() < 0.4:
        # Docker's CentOS repository: epoch 3, provides docker (docs/domain.md).
        specs.append(PkgSpec("docker-ce", "18.09.2", "3.el7", epoch=3, provides=["docker = 18.09.2ce"]))
    for i, v in enumerate(["1.14.4", "1.20.0", "1.51.0"][: rng.randint(1, 3)]):
        specs.append(PkgSpec("ecs-init", v, f"{i + 1}.amzn1", requires=docker_req(rng)))
    runtimes = [("2.0.0", "1"), ("3.0.0", "1")][: rng.randint(1, 2)]
    for v, r in runtimes:
        specs.append(PkgSpec("nvidia-container-runtime", v, r))
    for i, v in enumerate(["2.0.3", "2.1.0", "2.5.0"][: rng.randint(1, 3)]):
        rv, rr = rng.choice(runtimes)
        req = docker_req(rng, "docker-ce" if rng.random() < 0.15 else "docker")
        pin = f"nvidia-container-runtime = {rv}-{rr}" if rng.random() < 0.5 else f"nvidia-container-runtime >= {rv}"
        specs.append(PkgSpec("nvidia-docker2", v, f"{i + 1}", requires=[*req, pin]))
    return specs


def dnf(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dnf", "-q", "--disableplugin=local", "--disableplugin=versionlock", f"--installroot={root}",
                           f"--setopt=reposdir={root}/etc/yum.repos.d", "--releasever=2023", *args],
                          capture_output=True, text=True, timeout=120)


def installable(root: Path, nevras: list[str]) -> tuple[bool, str]:
    out = dnf(root, "--assumeno", "install", *nevras)
    text = out.stdout + out.stderr
    return "Operation aborted" in text and "Problem" not in text, text


@pytest.mark.parametrize("seed", range(12))
def test_resolver_agrees_with_libsolv(seed: int, tmp_path: Path, request) -> None:
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    repo = build_repo(scenario(seed), tmp_path / "repo", cache=cache / "pkgs")
    root = tmp_path / "root"
    (root / "etc/yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    (root / "etc/yum.repos.d/fixture.repo").write_text(repo_file({"fixture": repo}))

    host = Host(root)
    backend = DnfBackend(host, detect(host), "dnf")
    candidates = backend.available(QUERY_NAMES)
    assert backend.queries == 1
    result = resolve(candidates, [], stack="legacy")
    if isinstance(result, Selection):
        ok, text = installable(root, [p.nevra for p in result.packages.values()])
        assert ok, f"gpuprep selected {result.as_dict()} but libsolv says:\n{text}"
    else:
        assert isinstance(result, NoSolution)
        ecs = [p.nevra for p in candidates if p.name == "ecs-init"]
        nd2 = [p.nevra for p in candidates if p.name == "nvidia-docker2"]
        for e in ecs:
            for n in nd2:
                ok, text = installable(root, [e, n])
                assert not ok, f"gpuprep found no solution ({result.conflicts}) but dnf installs {e} + {n}"


def test_scenarios_cover_both_outcomes() -> None:
    """The generated cases include selections and no-solutions (else the oracle test proves half)."""
    from gpuprep.packages.evr import EVR, Dep
    from gpuprep.packages.resolve import Package

    def as_pkg(s: PkgSpec) -> Package:
        provides = [Dep(s.name, "=", EVR(s.version, s.release, s.epoch)), *map(Dep.parse, s.provides)]
        return Package(s.name, EVR(s.version, s.release, s.epoch), s.arch, tuple(map(Dep.parse, s.requires)),
                       tuple(provides))

    outcomes = {type(resolve([as_pkg(s) for s in scenario(seed)], [], stack="legacy")).__name__ for seed in range(12)}
    assert outcomes == {"Selection", "NoSolution"}
