"""The registry of steps and checks: the three commands' real lists pass it, and each mistake it exists for is
refused when a list is built."""

from __future__ import annotations

import pytest

from gpuprep import doctor, install, seal
from gpuprep.options import DoctorOptions, InstallOptions, SealOptions
from gpuprep.report import Status
from gpuprep.runner import registry
from gpuprep.runner.checks import Check, Verdict
from gpuprep.runner.needs import Option
from gpuprep.runner.steps import Converged, Step


def _ok(p: object) -> Verdict:
    return Verdict(Status.OK, "ok")


class Named(Step):
    def __init__(self, id: str, *, gate: bool = False, needs: tuple[Option, ...] = ()) -> None:
        self.id, self.gate, self.needs = id, gate, needs

    def plan(self, ctx: object) -> Converged:
        return Converged("nothing")


def test_the_commands_lists_pass_and_keep_the_contracts_order():
    """docs/contract.md's step order, the one gate first; doctor's checks grouped in GROUPS' order."""
    steps = install.install_steps()
    assert [s.id for s in steps][:3] == ["preflight", "repositories", "packages"] and steps[0].gate
    assert [s.id for s in seal.seal_steps()] == ["preflight", "stop-ecs", "containers", "images", "ecs-state",
                                                 "gpu-info", "toolkit-state", "gpu-health-state", "deep-clean",
                                                 "stamp"]
    assert [s.id for s in seal.seal_steps() if not s.confirmed] == ["stamp"]
    groups = [c.group for c in doctor.all_checks()]
    assert groups == sorted(groups, key=doctor.GROUPS.index)


def test_a_duplicate_or_retired_id_is_refused():
    with pytest.raises(registry.RegistryError, match="step id a is listed twice"):
        registry.steps([Named("a"), Named("a")], InstallOptions, {})
    with pytest.raises(registry.RegistryError, match=r"step id old was retired \(split in two\)"):
        registry.steps([Named("old")], InstallOptions, {"old": "split in two"})
    with pytest.raises(registry.RegistryError, match="check id c is listed twice"):
        registry.checks([Check("c", "gpu", "t", _ok), Check("c", "ecs", "t", _ok)], ("gpu", "ecs"), DoctorOptions,
                        {})
    with pytest.raises(registry.RegistryError, match="check id gone was retired"):
        registry.checks([Check("gone", "gpu", "t", _ok)], ("gpu",), DoctorOptions, {"gone": "why"})


def test_an_unknown_group_option_or_a_late_gate_is_refused():
    with pytest.raises(registry.RegistryError, match="group gpus is none of gpu, ecs"):
        registry.checks([Check("c", "gpus", "t", _ok)], ("gpu", "ecs"), DoctorOptions, {})
    with pytest.raises(registry.RegistryError, match="needs option deeep, which SealOptions does not have"):
        registry.steps([Named("d", needs=(Option("deeep", "only with --deep"),))], SealOptions, {})
    with pytest.raises(registry.RegistryError, match="step late is a gate but not first"):
        registry.steps([Named("a"), Named("late", gate=True)], InstallOptions, {})
    assert [s.id for s in registry.steps([Named("g", gate=True), Named("d", needs=(Option("deep", "x"),))],
                                         SealOptions, {})] == ["g", "d"]


def test_checks_are_ordered_by_group_then_as_listed():
    listed = [Check("e1", "ecs", "t", _ok), Check("g1", "gpu", "t", _ok), Check("e2", "ecs", "t", _ok),
              Check("g2", "gpu", "t", _ok)]
    assert [c.id for c in registry.checks(listed, ("gpu", "ecs"), DoctorOptions, {})] == ["g1", "g2", "e1", "e2"]
