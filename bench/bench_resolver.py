"""Resolver speed on 5,000 candidate versions (bar: under 100 ms), and `install --dry-run` against a
fixture repository beside a bare `dnf repoquery` of the same names, with the count of package-manager
queries. Prints markdown table rows; appends nothing (the lead keeps bench/RESULTS.md).

    .venv/bin/python bench/bench_resolver.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gpuprep.packages.evr import EVR, Dep  # noqa: E402
from gpuprep.packages.resolve import QUERY_NAMES, Package, Selection, resolve  # noqa: E402


def candidates(n: int = 5000) -> list[Package]:
    """Shapes of the real repositories, scaled: Docker builds, ecs-init ranges, nvidia-docker2 exact pins."""
    per = n // 4
    dockers = [f"{17 + i // 200}.{(i // 20) % 10:02d}.{i % 20}ce" for i in range(per)]
    out = [Package("docker", EVR(v, "1.amzn2")) for v in dockers]
    for i in range(per):
        lo = dockers[min(per - 1, i // 2)]
        out.append(Package("ecs-init", EVR(f"1.{i}.0", "1"), requires=(Dep("docker", ">=", EVR(lo)),)))
    for i in range(per):
        # Pinned to one Docker each, the newest pins point at builds ecs-init's newest range excludes.
        pin = dockers[(i * 7) % per]
        out.append(Package("nvidia-docker2", EVR("2.0.3", f"{i}.docker{pin}"),
                           requires=(Dep("docker", "=", EVR(pin)),
                                     Dep("nvidia-container-runtime", ">=", EVR("2.0.0")))))
        out.append(Package("nvidia-container-runtime", EVR(f"2.{i}.0", "1")))
    return out


def bench_resolve() -> None:
    cands = candidates()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        sel = resolve(cands, [], stack="legacy")
        times.append((time.perf_counter() - t) * 1000)
    assert isinstance(sel, Selection), sel
    print(f"| resolver, {len(cands)} candidates (legacy pins) | median {statistics.median(times):.1f} ms "
          f"(min {min(times):.1f}, max {max(times):.1f}) | bar < 100 ms |")


def bench_dry_run() -> None:
    from rpmfixtures import PkgSpec, build_repo, repo_file

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        specs = [PkgSpec("docker", v, "1.amzn2023") for v in ("20.10.25", "24.0.9", "25.0.6")]
        specs += [PkgSpec("ecs-init", f"1.{v}.0", "1", requires=["docker >= 20.10.0"]) for v in range(80, 90)]
        for v in ("1.18.2", "1.19.1"):  # 1.19.1: the security floor (bulletin 5850)
            specs += [PkgSpec("nvidia-container-toolkit", v, "1", requires=[f"nvidia-container-toolkit-base = {v}-1"]),
                      PkgSpec("nvidia-container-toolkit-base", v, "1"), PkgSpec("libnvidia-container-tools", v, "1"),
                      PkgSpec("libnvidia-container1", v, "1")]
        # AL2023's versionlock plugin: without it in the repositories the plan refuses at once (exit 3).
        specs.append(PkgSpec("python3-dnf-plugin-versionlock", "4.3.0", "13.amzn2023.0.4",
                             provides=["dnf-command(versionlock)"]))
        repo = build_repo(specs, t / "repo")
        root = t / "root"
        (root / "etc/yum.repos.d").mkdir(parents=True)
        shutil.copy(REPO / "tests/fixtures/distros/amzn-2023/etc/os-release", root / "etc/os-release")
        (root / "etc/yum.repos.d/fixture.repo").write_text(repo_file({"fixture": repo}))
        gp = [str(REPO / ".venv/bin/gpuprep"), "--root", str(root), "--json", "install", "--dry-run",
              "--only", "preflight,repositories,packages"]
        bare = ["dnf", "-q", "--disableplugin=local", "--disableplugin=versionlock", f"--installroot={root}",
                f"--setopt=reposdir={root}/etc/yum.repos.d", "--releasever=2023", "repoquery", "--showduplicates",
                *QUERY_NAMES, "python3-dnf-plugin-versionlock"]  # the names gpuprep's one query asks
        subprocess.run(bare, capture_output=True, check=True)  # warm dnf's metadata cache for both
        g, b, queries = [], [], None
        for _ in range(3):
            s = time.perf_counter()
            out = subprocess.run(gp, capture_output=True, text=True, check=True)
            g.append(time.perf_counter() - s)
            s = time.perf_counter()
            subprocess.run(bare, capture_output=True, check=True)
            b.append(time.perf_counter() - s)
            queries = next(x for x in json.loads(out.stdout)["steps"] if x["id"] == "packages")["data"]["queries"]
        print(f"| install --dry-run (preflight,repositories,packages), {len(specs)}-package fixture repo | "
              f"median {statistics.median(g) * 1000:.0f} ms, {queries} package-manager query | "
              f"bare dnf repoquery of the same names: median {statistics.median(b) * 1000:.0f} ms |")


if __name__ == "__main__":
    print("| what | result | reference |")
    print("|---|---|---|")
    bench_resolve()
    if shutil.which("dnf") and shutil.which("rpmbuild"):
        bench_dry_run()
