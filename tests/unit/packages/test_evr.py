"""RPM version order against the real oracle: rpm's own ``rpm.vercmp`` (rpm 4.18, the Debian package).

Pairs are batched into one ``rpm --eval`` Lua call per hypothesis batch, so thousands of pairs cost
one process. Needs the ``rpm`` program (real component, no simulation).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprep.packages.evr import EVR, Dep, vercmp

pytestmark = [pytest.mark.allow_subp("rpm"),
              pytest.mark.skipif(shutil.which("rpm") is None, reason="needs rpm (run `make provision` as root)")]


def oracle(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm.vercmp for every pair, in one rpm process."""
    # Lua long strings [==[...]==] need no escaping; the alphabet below never contains "]==]" or "%".
    # rpm.vercmp parses both sides as [epoch:]version[-release] (rpmverCmp); rpm rejects an empty version.
    table = ",".join(f"{{[==[{a}]==],[==[{b}]==]}}" for a, b in pairs)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'for _, p in ipairs({{{table}}}) do print(rpm.vercmp(p[1], p[2]) .. " ") end\n')
        script.flush()
        out = subprocess.run(["rpm", "--eval", f'%{{lua: dofile("{script.name}")}}'],
                             capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


# Real-world shapes from docs/domain.md and the repositories gpuprep meets.
REAL_WORLD = [
    "17.03.2ce", "17.06.2ce", "18.03.1ce", "18.06.1ce", "18.09.2ce", "18.09.2", "18.09.9ce", "19.03.13ce",
    "20.10.0", "20.10.7", "20.10.25", "25.0.6", "1.13.1", "1.12.6", "1.6.0",
    "1.14.4", "1.97.1", "1.51.0", "2.0.3", "2.1.0", "2.5.0", "2.14.0", "3.0.0", "3.14.0", "1.15.0",
    "1.17.8", "1.0.0~rc.1", "1.0.0~rc1", "1.0.0", "1.0.0^git20240101", "1.0.0.1", "1.0a", "1.0.a",
    "1.docker18.03.1.ce.amzn1", "1.docker18.09.2.ce", "7.25.amzn1", "8.28.amzn1", "2.16.amzn1",
    "1.amzn2023.0.1", "1.amzn2023", "3.el7", "1.el8_9", "0.1.rc1", "1", "01", "001", "1.01", "1.1",
    "a", "b", "A", "Z", "~", "^", "~~", "^^", "1~", "1^", "1.~", "_", "+1", "1+", "1..0", "1.0.",
]
# Whole EVRs, compared by rpm as rpmverCmp does (epoch, version, release only when both have one).
REAL_WORLD_EVR = [
    "18.06.1ce-7.25.amzn1", "18.06.1ce-8.28.amzn1", "18.06.1ce", "3:18.09.2-3.el7", "3:18.09.2", "18.09.2-1",
    "2:1.13.1-208.git7d71120.el7_9", "1.13.1-1", "0:1.13.1-1", "20.10.25-1.amzn2023.0.1", "20.10.25-1.amzn2023",
    "25.0.6-1.amzn2023.0.2", "1.17.8-1", "1.17.8~rc.1-1", "1.17.8-1^20240101", "1:1.0-1", "1:1.0",
]


# Version strings built from the pieces rpm cares about: digit runs (with leading zeros), letter runs,
# separators, tilde and caret.
SEGMENT = st.one_of(
    st.from_regex(r"\A[0-9]{1,4}\Z"),
    st.from_regex(r"\A[a-zA-Z]{1,3}\Z"),
    st.sampled_from([".", "_", "+", "~", "^", "..", "~~", "^~", "~^", ""]),
)
VERSION = st.lists(SEGMENT, min_size=1, max_size=7).map("".join).filter(bool)


def test_real_world_shapes_all_pairs() -> None:
    pairs = [(a, b) for a in REAL_WORLD for b in REAL_WORLD]
    expected = oracle(pairs)
    got = [vercmp(a, b) for a, b in pairs]
    wrong = [(a, b, g, e) for (a, b), g, e in zip(pairs, got, expected) if g != e]
    assert not wrong, wrong[:10]


def test_real_world_evrs_all_pairs() -> None:
    pairs = [(a, b) for a in REAL_WORLD_EVR for b in REAL_WORLD_EVR]
    got = [EVR.parse(a).compare(EVR.parse(b)) for a, b in pairs]
    assert got == oracle(pairs)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3) | st.none(), VERSION, VERSION | st.just(""),
                          st.integers(0, 3) | st.none(), VERSION, VERSION | st.just("")), min_size=40, max_size=40))
def test_evr_compare_matches_rpm(rows) -> None:
    def text(e, v, r):
        return (f"{e}:" if e is not None else "") + v + (f"-{r}" if r else "")
    pairs = [(text(*row[:3]), text(*row[3:])) for row in rows]
    assert [EVR.parse(a).compare(EVR.parse(b)) for a, b in pairs] == oracle(pairs)


def test_known_orders() -> None:
    assert vercmp("1.0~rc1", "1.0") == -1
    assert vercmp("1.0^git1", "1.0") == 1
    assert vercmp("1.0^git1", "1.0.1") == -1
    assert vercmp("18.09.2ce", "18.09.2") == 1  # the Amazon "ce" suffix is a newer alpha segment
    assert vercmp("1.0a", "1.0") == 1
    assert vercmp("1.0", "1.0.a") == -1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(VERSION, VERSION), min_size=50, max_size=50))
def test_vercmp_matches_rpm(pairs: list[tuple[str, str]]) -> None:
    # Mutations of one another make equal prefixes and the tricky tails likely.
    pairs = pairs + [(a, a + b) for a, b in pairs] + [(a, b + "~") for a, b in pairs]
    assert [vercmp(a, b) for a, b in pairs] == oracle(pairs)


def test_evr_epochs_and_releases() -> None:
    assert EVR.parse("3:18.09.2-3.el7") > EVR.parse("19.03.13-1")  # epoch first
    assert EVR.parse("0:1.0-1") == EVR.parse("1.0-1")  # missing epoch is 0
    assert EVR.parse("18.06.1ce-7.25.amzn1") < EVR.parse("18.06.1ce-8.28.amzn1")
    assert EVR.parse("1.2.3-4.5") == EVR(version="1.2.3", release="4.5")
    assert EVR.parse("1.0").release == ""


def test_dep_equal_without_release_matches_any_release() -> None:
    dep = Dep.parse("docker = 18.09.2ce")
    assert dep.matches(EVR.parse("18.09.2ce-1.amzn1"))
    assert dep.matches(EVR.parse("18.09.2ce-9.99"))
    assert not dep.matches(EVR.parse("18.09.2-1"))
    pinned = Dep.parse("docker = 18.06.1ce-7.25.amzn1")
    assert pinned.matches(EVR.parse("18.06.1ce-7.25.amzn1"))
    assert not pinned.matches(EVR.parse("18.06.1ce-8.28.amzn1"))


def test_dep_epochs_and_ranges() -> None:
    assert Dep.parse("docker-ce = 3:18.09.2").matches(EVR.parse("3:18.09.2-3.el7"))
    assert not Dep.parse("docker-ce = 18.09.2").matches(EVR.parse("3:18.09.2-3.el7"))  # epoch 0 < 3
    assert Dep.parse("docker >= 17.06.2ce").matches(EVR.parse("2:1.13.1-1"))  # epoch beats version
    assert Dep.parse("docker <= 1.12.6").matches(EVR.parse("1.12.6-2.19.amzn1"))
    assert not Dep.parse("docker < 1.12.6").matches(EVR.parse("1.12.6-2.19.amzn1"))
    assert Dep.parse("docker >= 1.0").matches(None)  # an unversioned provide satisfies all


def test_dep_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Dep.parse("docker >>= 1")


def test_a_written_release_orders_after_none_as_rpm_does() -> None:
    """Found by the rpm-oracle property test (seed 7): rpm.vercmp("0:0-.", "0:0") is 1, a release of only
    separators still counts as written; "0-" too. Checked against rpm itself, not only asserted."""
    pairs = [("0-.", "0"), ("0-", "0"), ("0-~", "0"), ("0", "0-~"), ("1-_", "1"), ("0-.", "0-")]
    assert [EVR.parse(a).compare(EVR.parse(b)) for a, b in pairs] == oracle(pairs) == [1, 1, 1, -1, 1, 0]
