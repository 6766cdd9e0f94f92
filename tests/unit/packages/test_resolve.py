"""The resolver as a pure function, on package sets shaped like the real repositories (docs/domain.md).

No package manager here: candidates are built in memory. tests/integration/test_resolver_libsolv.py
holds the same resolver against dnf's libsolv on real generated repositories.
"""

from __future__ import annotations

from gpuprep.packages.evr import EVR, Dep
from gpuprep.packages.resolve import NoSolution, Package, Selection, resolve


def pkg(nevr: str, *requires: str, provides=(), obsoletes=(), conflicts=(), arch="noarch", repo="fixture") -> Package:
    """``name-[e:]version-release``; the name is everything before the last two dashes."""
    name, version, release = nevr.rsplit("-", 2)
    evr = EVR.parse(f"{version}-{release}")
    return Package(name, evr, arch, tuple(Dep.parse(r) for r in requires), tuple(Dep.parse(p) for p in provides),
                   tuple(Dep.parse(o) for o in obsoletes), tuple(Dep.parse(c) for c in conflicts), repo)


def installed(p: Package) -> Package:
    return Package(p.name, p.evr, p.arch, p.requires, p.provides, p.obsoletes, p.conflicts, "@System")


# Amazon Linux 1 in 2018, as the seed's author met it: each nvidia-docker2 pins one Docker build.
AL1 = [
    pkg("docker-17.03.2ce-1.59.amzn1"),
    pkg("docker-17.06.2ce-1.107.amzn1"),
    pkg("docker-18.03.1ce-2.7.amzn1"),
    pkg("docker-18.06.1ce-7.25.amzn1"),
    pkg("docker-18.09.2ce-1.amzn1"),
    pkg("ecs-init-1.14.4-1.amzn1", "docker = 17.03.2ce"),
    pkg("ecs-init-1.13.1-1.amzn1", "docker >= 1.6.0", "docker <= 1.12.6"),
    pkg("nvidia-docker2-2.0.3-1.docker18.09.2.ce", "docker = 18.09.2ce",
        "nvidia-container-runtime = 2.0.0-1.docker18.09.2"),
    pkg("nvidia-docker2-2.0.3-1.docker17.03.2.ce", "docker = 17.03.2ce",
        "nvidia-container-runtime = 2.0.0-1.docker17.03.2"),
    pkg("nvidia-container-runtime-2.0.0-1.docker18.09.2"),
    pkg("nvidia-container-runtime-2.0.0-1.docker17.03.2"),
]


def test_seed_case_picks_the_agreeing_pair_and_explains() -> None:
    sel = resolve(AL1, [], stack="legacy")
    assert isinstance(sel, Selection), sel
    assert sel.as_dict() == {
        "ecs-init": "ecs-init-1.14.4-1.amzn1",
        "docker": "docker-17.03.2ce-1.59.amzn1",
        "nvidia-docker2": "nvidia-docker2-2.0.3-1.docker17.03.2.ce",
        "nvidia-container-runtime": "nvidia-container-runtime-2.0.0-1.docker17.03.2",
    }
    # The issue's own sentence: the newer nvidia-docker2 was passed over, and why.
    assert ("nvidia-docker2-2.0.3-1.docker18.09.2.ce needs docker = 18.09.2ce; "
            "ecs-init-1.14.4-1.amzn1 requires docker = 17.03.2ce") in sel.passed_over
    table = "\n".join(sel.table())
    assert "docker-17.03.2ce-1.59.amzn1" in table and "passed over" in table
    assert sel.stack == "legacy"


def test_no_solution_lists_closest_conflicts() -> None:
    cands = [p for p in AL1 if "docker17.03" not in p.nevr]
    res = resolve(cands, [], stack="legacy")
    assert isinstance(res, NoSolution)
    assert any("needs docker = 18.09.2ce" in c and "ecs-init-1.14.4-1.amzn1" in c for c in res.conflicts), res.conflicts


def test_keep_installed_docker_over_newer_ecs_init() -> None:
    cands = [
        pkg("docker-19.03.13ce-1.amzn2"), pkg("docker-20.10.25-1.amzn2"),
        pkg("ecs-init-1.51.0-1.amzn2", "docker >= 17.06.2ce"), pkg("ecs-init-1.97.1-1.amzn2", "docker >= 20.10.0"),
        pkg("nvidia-docker2-2.6.0-1", "docker >= 18.06.1ce-2.16.amzn1", "nvidia-container-runtime >= 3.0.0"),
        pkg("nvidia-container-runtime-3.5.0-1"),
    ]
    inst = [installed(cands[0])]
    sel = resolve(cands, inst, stack="legacy")
    assert isinstance(sel, Selection)
    assert sel.as_dict()["docker"] == "docker-19.03.13ce-1.amzn2"
    assert sel.as_dict()["ecs-init"] == "ecs-init-1.51.0-1.amzn2"
    assert any("ecs-init-1.97.1-1.amzn2 needs docker >= 20.10.0; the installed docker-19.03.13ce-1.amzn2 is kept" in p
               for p in sel.passed_over), sel.passed_over
    assert "docker" not in [p.name for p in sel.to_install]
    # --docker moves it.
    sel = resolve(cands, inst, stack="legacy", docker="20.10.25")
    assert isinstance(sel, Selection)
    assert sel.as_dict()["docker"] == "docker-20.10.25-1.amzn2"
    assert sel.as_dict()["ecs-init"] == "ecs-init-1.97.1-1.amzn2"


def test_installed_docker_replaced_when_nothing_accepts_it() -> None:
    cands = [pkg("docker-20.10.25-1"), pkg("docker-17.03.2ce-1"), pkg("ecs-init-1.97.1-1", "docker >= 20.10.0"),
             pkg("nvidia-docker2-2.6.0-1", "docker >= 18.06.1ce"), pkg("nvidia-container-runtime-3.5.0-1")]
    sel = resolve(cands, [installed(cands[1])], stack="legacy")
    assert isinstance(sel, Selection) and sel.docker.nevr == "docker-20.10.25-1"


def test_newest_ecs_init_then_runtime_then_docker() -> None:
    cands = [
        pkg("docker-18.06.1ce-7.25.amzn1"), pkg("docker-18.06.1ce-8.28.amzn1"), pkg("docker-18.09.9ce-2.amzn1"),
        pkg("ecs-init-1.20.0-1", "docker >= 17.06.2ce"),
        pkg("ecs-init-1.21.0-1", "docker >= 17.06.2ce", "docker < 18.09"),
        # A release-pinned build (docs/domain.md: docker = 18.06.1ce-7.25.amzn1) broke when Amazon moved to -8.28.
        pkg("nvidia-docker2-2.0.3-3.docker18.06.1.ce.amzn1", "docker = 18.06.1ce-7.25.amzn1"),
        pkg("nvidia-docker2-2.0.3-2.docker18.06.1.ce.amzn1", "docker = 18.06.1ce"),
        pkg("nvidia-container-runtime-2.0.0-3.docker18.06.1.amzn1"),
    ]
    sel = resolve(cands, [], stack="legacy")
    assert isinstance(sel, Selection)
    d = sel.as_dict()
    assert d["ecs-init"] == "ecs-init-1.21.0-1"
    assert d["nvidia-docker2"] == "nvidia-docker2-2.0.3-3.docker18.06.1.ce.amzn1"
    assert d["docker"] == "docker-18.06.1ce-7.25.amzn1"


def test_epochs_and_provides_docker_ce() -> None:
    # CentOS: docker-ce with epoch 3 provides docker; RHEL's own docker has epoch 2.
    cands = [
        pkg("docker-ce-3:18.09.2-3.el7", provides=["docker = 3:18.09.2-3.el7"]),
        pkg("docker-ce-3:19.03.13-3.el7", provides=["docker = 3:19.03.13-3.el7"]),
        pkg("ecs-init-1.51.0-1", "docker >= 17.06.2ce"),
        pkg("nvidia-docker2-2.0.3-1.docker18.09.2.ce", "docker-ce = 3:18.09.2",
            "nvidia-container-runtime = 2.0.0-1.docker18.09.2"),
        pkg("nvidia-container-runtime-2.0.0-1.docker18.09.2"),
    ]
    sel = resolve(cands, [], stack="legacy")
    assert isinstance(sel, Selection)
    assert sel.as_dict()["docker-ce"] == "docker-ce-3:18.09.2-3.el7"
    assert sel.docker.nevra == "docker-ce-3:18.09.2-3.el7.noarch"


def test_forced_docker_version_matches_any_epoch() -> None:
    """``--docker 19.03.13`` means docker-ce 3:19.03.13 on CentOS: users type versions, not epochs. With an epoch
    given, it must match exactly."""
    cands = [
        pkg("docker-ce-3:18.09.2-3.el7", provides=["docker = 3:18.09.2-3.el7"]),
        pkg("docker-ce-3:19.03.13-3.el7", provides=["docker = 3:19.03.13-3.el7"]),
        pkg("docker-ce-3:20.10.7-3.el7", provides=["docker = 3:20.10.7-3.el7"]),
        pkg("ecs-init-1.51.0-1", "docker >= 17.06.2ce"),
        *toolkit("1.19.1"),
    ]
    sel = resolve(cands, [], docker="19.03.13")
    assert isinstance(sel, Selection) and sel.as_dict()["docker-ce"] == "docker-ce-3:19.03.13-3.el7"
    assert sel.why["docker-ce"] == "--docker 19.03.13"
    assert resolve(cands, [], docker="19.03.13-3.el7").as_dict()["docker-ce"] == "docker-ce-3:19.03.13-3.el7"
    assert resolve(cands, [], docker="3:19.03.13").as_dict()["docker-ce"] == "docker-ce-3:19.03.13-3.el7"
    wrong_epoch = resolve(cands, [], docker="1:19.03.13")
    assert isinstance(wrong_epoch, NoSolution) and "--docker 1:19.03.13: no such Docker offered" in wrong_epoch.message


def toolkit(version: str, release: str = "1") -> list[Package]:
    v = f"{version}-{release}"
    return [
        pkg(f"nvidia-container-toolkit-{v}", f"nvidia-container-toolkit-base = {v}",
            f"libnvidia-container-tools >= {version}",
            provides=["nvidia-container-runtime"], obsoletes=["nvidia-container-runtime < 3.14.0-1"], arch="x86_64"),
        pkg(f"nvidia-container-toolkit-base-{v}", arch="x86_64"),
        pkg(f"libnvidia-container-tools-{v}", f"libnvidia-container1 = {v}", arch="x86_64"),
        pkg(f"libnvidia-container1-{v}", arch="x86_64"),
    ]


AL2023 = [
    pkg("docker-20.10.25-1.amzn2023.0.1", arch="x86_64"), pkg("docker-25.0.6-1.amzn2023.0.2", arch="x86_64"),
    pkg("ecs-init-1.97.1-1.amzn2023", "docker >= 20.10.0"),
    *toolkit("1.18.2"), *toolkit("1.19.1"),  # 1.19.1: the security floor (bulletin 5850)
]


def test_auto_takes_toolkit_all_one_version() -> None:
    sel = resolve(AL2023, [], stack="auto")
    assert isinstance(sel, Selection)
    assert sel.stack == "toolkit"
    assert sel.as_dict() == {
        "ecs-init": "ecs-init-1.97.1-1.amzn2023",
        "docker": "docker-25.0.6-1.amzn2023.0.2",
        "nvidia-container-toolkit": "nvidia-container-toolkit-1.19.1-1",
        "nvidia-container-toolkit-base": "nvidia-container-toolkit-base-1.19.1-1",
        "libnvidia-container-tools": "libnvidia-container-tools-1.19.1-1",
        "libnvidia-container1": "libnvidia-container1-1.19.1-1",
    }
    assert [p.nevra for p in sel.to_install][2] == "nvidia-container-toolkit-1.19.1-1.x86_64"


def test_auto_without_toolkit_is_legacy_and_legacy_only_when_asked() -> None:
    assert resolve(AL1, [], stack="auto").stack == "legacy"
    res = resolve(AL1, [], stack="toolkit")
    assert isinstance(res, NoSolution) and "nvidia-container-toolkit" in res.message


def test_converged_installed_set_is_kept_and_nothing_to_install() -> None:
    sel = resolve(AL2023, [], stack="toolkit")
    inst = [installed(p) for p in sel.packages.values()]
    again = resolve(AL2023, inst, stack="auto")
    assert isinstance(again, Selection)
    assert again.as_dict() == sel.as_dict()
    assert again.to_install == []


def test_forced_docker_that_is_not_offered() -> None:
    res = resolve(AL2023, [], docker="19.03.13ce")
    assert isinstance(res, NoSolution) and "--docker 19.03.13ce" in res.message


def test_obsoletes_and_conflicts_exclude() -> None:
    cands = [pkg("docker-20.10.25-1"),
             pkg("ecs-init-1.97.1-1", "docker >= 20.10.0", conflicts=["nvidia-docker2 < 2.6"]),
             pkg("ecs-init-1.90.0-1", "docker >= 20.10.0"),
             pkg("nvidia-docker2-2.5.0-1", "docker >= 18.06"), pkg("nvidia-container-runtime-3.5.0-1")]
    sel = resolve(cands, [], stack="legacy")
    assert isinstance(sel, Selection)
    assert sel.as_dict()["ecs-init"] == "ecs-init-1.90.0-1"
    assert any("conflicts with" in p for p in sel.passed_over), sel.passed_over


def test_legacy_runtime_pulls_toolkit_it_requires() -> None:
    # nvidia-container-runtime 3.x requires nvidia-container-toolkit (what dnf would pull in).
    cands = [pkg("docker-20.10.25-1"), pkg("ecs-init-1.97.1-1", "docker >= 20.10.0"),
             pkg("nvidia-docker2-2.14.0-1", "nvidia-container-toolkit >= 1.13.0-1"),
             pkg("nvidia-container-runtime-3.14.0-1", "nvidia-container-toolkit >= 1.14.0-1"),
             *[p for p in toolkit("1.14.0") if "obsol" not in p.name]]
    sel = resolve(cands, [], stack="legacy", allow_vulnerable=True)  # 1.14.0: below the security floor
    assert isinstance(sel, Selection), sel
    assert sel.as_dict()["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.14.0-1"


def test_no_ecs_init_offered() -> None:
    res = resolve([pkg("docker-20.10.25-1")], [], stack="legacy")
    assert isinstance(res, NoSolution) and "ecs-init" in res.message


# -- the security floor (gpuprep/packages/security.py: NVIDIA's bulletins) -------------------------------------
BASE = [pkg("docker-25.0.6-1.amzn2023.0.2", arch="x86_64"), pkg("ecs-init-1.97.1-1.amzn2023", "docker >= 20.10.0")]


def test_a_repository_offering_only_vulnerable_toolkits_gives_no_selection_naming_the_cve() -> None:
    """Bulletin 5850: every toolkit up to 1.19.0 is affected by CVE-2026-24260."""
    res = resolve([*BASE, *toolkit("1.18.2"), *toolkit("1.19.0")], [], stack="auto")
    assert isinstance(res, NoSolution), res
    assert "below the security floor 1.19.1" in res.message and "nvidia-container-toolkit-1.19.0-1" in res.message
    assert "CVE-2026-24260" in res.message and "bulletin 5850" in res.message
    assert res.cves == ["CVE-2026-24260"]
    older = resolve([*BASE, *toolkit("1.17.7"), *toolkit("1.19.0")], [], stack="auto")
    assert "CVE-2025-23266" not in older.cves  # the newest offered one's CVEs (1.19.0's), not 1.17.7's


def test_allow_vulnerable_selects_the_newest_offered_and_says_so() -> None:
    sel = resolve([*BASE, *toolkit("1.18.2"), *toolkit("1.19.0")], [], stack="auto", allow_vulnerable=True)
    assert isinstance(sel, Selection)
    assert sel.as_dict()["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.19.0-1"
    assert any("nvidia-container-toolkit-1.19.0-1 is below the security floor" in v and "CVE-2026-24260" in v
               for v in sel.vulnerable)
    assert any("--allow-vulnerable" in n for n in sel.notes)


def test_an_installed_vulnerable_toolkit_is_replaced_not_kept() -> None:
    have = [installed(p) for p in [*BASE, *toolkit("1.19.0")]]
    sel = resolve([*BASE, *toolkit("1.19.0"), *toolkit("1.19.1")], have, stack="auto")
    assert isinstance(sel, Selection)
    assert sel.as_dict()["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.19.1-1"
    assert {p.name for p in sel.to_install} == {"nvidia-container-toolkit", "nvidia-container-toolkit-base",
                                                "libnvidia-container-tools", "libnvidia-container1"}
    assert any("nvidia-container-toolkit-1.19.0-1" in r and "CVE-2026-24260" in r for r in sel.replaced_vulnerable)
    # The converged check (the installed set resolved alone) does not call it converged.
    assert isinstance(resolve(have, have, stack="auto"), NoSolution)


def test_a_legacy_runtime_cannot_pull_a_vulnerable_toolkit_in_behind_the_selection() -> None:
    """A requirement only vulnerable packages satisfy stays unmet (dnf would otherwise install one)."""
    cands = [*BASE, pkg("nvidia-docker2-2.14.0-1", "nvidia-container-toolkit >= 1.13.0-1"),
             pkg("nvidia-container-runtime-3.14.0-1", "nvidia-container-toolkit >= 1.14.0-1"), *toolkit("1.19.0")]
    res = resolve(cands, [], stack="legacy")
    assert isinstance(res, NoSolution) and "CVE-2026-24260" in res.message


def test_the_floor_and_its_bulletins() -> None:
    from gpuprep.packages.security import advisories_for, describe, floor

    assert floor() == "1.19.1"  # bulletin 5850 (2026-06-30)
    assert advisories_for("1.19.1") == [] and advisories_for("1.20.0~rc.1") == []
    assert [a.fixed_in for a in advisories_for("1.17.8")] == ["1.19.1"]
    assert [a.fixed_in for a in advisories_for("1.16.2")] == ["1.17.0", "1.17.1", "1.17.4", "1.17.8", "1.19.1"]
    assert [a.fixed_in for a in advisories_for("1.19.1~rc.1")] == ["1.19.1"]  # a release candidate is before it
    assert advisories_for("1:1.17.3-1")[0].fixed_in == "1.17.4"  # epoch and Debian revision ignored
    assert "CVE-2024-0132, CVE-2024-0133 (fixed in 1.16.2, NVIDIA bulletin 5582)" in describe("1.16.1")
