"""The step runner: dry-run, idempotency, --only/--skip, failures and exit codes."""

from __future__ import annotations

import pytest

from gpuprep.errors import BadInput, PreconditionUnmet, StepFailed
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.platform import Platform
from gpuprep.report import StepStatus
from gpuprep.runner.needs import Engine, Option, Systemd
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step, run_steps


class FileStep(Step):
    """Writes a file when its content differs: the smallest real plan/apply step."""

    id = "write"
    title = "write a file"

    def __init__(self, path, content):
        self.path, self.content = path, content

    def plan(self, ctx):
        if self.path.exists() and self.path.read_text() == self.content:
            return Converged("already there")
        return Change(f"write {self.path.name}", diff="+" + self.content, payload=None)

    def apply(self, ctx, change):
        self.path.write_text(self.content)
        return Applied()


class Boom(Step):
    def __init__(self, id, exc):
        self.id, self.exc = id, exc

    def plan(self, ctx):
        raise self.exc


class Skipper(Step):
    id = "skipper"

    def plan(self, ctx):
        raise Skip("not here")


def _ctx(tmp_path, dry_run=False):
    platform = Platform("amzn", "2023", "Amazon Linux 2023", "amzn")
    return Context(Host(tmp_path), platform, InstallOptions(dry_run=dry_run))


def test_dry_run_plans_and_changes_nothing_then_real_then_converged(tmp_path):
    target = tmp_path / "f"
    step = FileStep(target, "x")
    dry = run_steps(_ctx(tmp_path, dry_run=True), "install", [step])
    assert dry.steps[0].status is StepStatus.PLANNED and dry.steps[0].diff == "+x" and not target.exists()
    real = run_steps(_ctx(tmp_path), "install", [step])
    assert real.steps[0].status is StepStatus.CHANGED and real.status == "changed" and target.read_text() == "x"
    again = run_steps(_ctx(tmp_path), "install", [step])
    assert again.steps[0].status is StepStatus.OK and again.status == "ok" and again.exit_code == 0


@pytest.mark.parametrize("exc,code", [(StepFailed("x"), 1), (BadInput("x"), 2), (PreconditionUnmet("x"), 3)])
def test_failure_stops_the_run_with_its_exit_code(tmp_path, exc, code):
    target = tmp_path / "f"
    rep = run_steps(_ctx(tmp_path), "install", [Boom("preflight", exc), FileStep(target, "x")])
    assert [s.status for s in rep.steps] == [StepStatus.FAILED, StepStatus.SKIPPED]
    assert rep.exit_code == code and rep.status == "failed" and not target.exists()
    assert rep.steps[1].summary == "not run: preflight failed"


def test_unexpected_exception_is_reported_not_raised(tmp_path):
    rep = run_steps(_ctx(tmp_path), "seal", [Boom("images", KeyError("Id"))])
    assert rep.exit_code == 1 and "internal error: KeyError" in rep.steps[0].summary and rep.exc is not None
    assert "_exc" not in rep.as_dict()


@pytest.mark.parametrize("exc,reference", [(StepFailed("x"), "step-failed"), (BadInput("x"), "bad-input"),
                                           (OSError(28, "No space left on device", "/etc/f"), "os-enospc"),
                                           (KeyError("Id"), "internal-error")])
def test_a_failed_step_and_its_report_carry_the_errors_reference(tmp_path, exc, reference):
    """--json's ``reference`` (docs/contract.md): on the failed step, and beside the report's ``error``."""
    doc = run_steps(_ctx(tmp_path), "install", [Boom("docker-runtime", exc)]).as_dict()
    assert doc["reference"] == doc["steps"][0]["reference"] == reference and doc["error"].startswith("docker-runtime")


def test_only_and_skip(tmp_path):
    steps = [FileStep(tmp_path / "a", "1"), Skipper()]
    rep = run_steps(_ctx(tmp_path), "install", steps, only=["skipper"])
    assert rep.steps[0].status is StepStatus.SKIPPED and "not selected" in rep.steps[0].summary
    assert rep.steps[1].summary == "not here" and not (tmp_path / "a").exists()
    rep = run_steps(_ctx(tmp_path), "install", steps, skip=["write,skipper"])
    assert all(s.status is StepStatus.SKIPPED for s in rep.steps)
    with pytest.raises(BadInput, match="unknown step nope"):
        run_steps(_ctx(tmp_path), "install", steps, only=["nope"])


class UndoableFile(FileStep):
    """A FileStep whose file a later failure makes useless: it goes, and the failure says so."""

    def undo(self, ctx, failed):
        self.path.unlink()
        return f"removed {self.path.name} ({failed.id} failed)"


def test_a_later_failure_asks_the_applied_steps_to_undo_and_says_what_they_undid(tmp_path):
    target, kept = tmp_path / "f", tmp_path / "g"
    keeper = FileStep(kept, "y")
    keeper.id = "keep"
    rep = run_steps(_ctx(tmp_path), "install", [UndoableFile(target, "x"), keeper, Boom("packages", StepFailed("no"))])
    assert [s.status for s in rep.steps] == [StepStatus.CHANGED, StepStatus.CHANGED, StepStatus.FAILED]
    assert not target.exists() and kept.read_text() == "y"  # a step without undo keeps its change
    assert rep.steps[2].summary == "no; removed f (packages failed)"
    assert rep.steps[2].data["undone"] == [{"step": "write", "what": "removed f (packages failed)"}]
    # A dry run applied nothing: nothing to undo.
    dry = run_steps(_ctx(tmp_path, dry_run=True), "install", [UndoableFile(target, "x"), Boom("packages",
                                                                                             StepFailed("no"))])
    assert dry.steps[1].summary == "no"


class Needy(FileStep):
    """A FileStep that needs an Engine and systemd: the runner, not its plan, decides it cannot run here."""

    id = "needy"
    needs = (Engine("no Engine here"), Systemd("it is a systemd unit"))

    def plan(self, ctx):
        raise AssertionError("planned although a need is unmet")


def test_a_step_with_an_unmet_need_is_skipped_with_the_first_reason_and_never_planned(tmp_path):
    ctx = Context(Host(tmp_path, env={}), Platform("amzn", "1", "Amazon Linux 1", "amzn", init="upstart"),
                  InstallOptions())
    assert ctx.host.docker_url is None  # a --root tree with no DOCKER_HOST
    rep = run_steps(ctx, "install", [Needy(tmp_path / "f", "x")])
    assert (rep.steps[0].status, rep.steps[0].summary) == (StepStatus.SKIPPED, "no Engine here")

    class SystemdOnly(Needy):
        needs = (Systemd("it is a systemd unit"),)

    rep = run_steps(ctx, "install", [SystemdOnly(tmp_path / "f", "x")])
    assert rep.steps[0].summary == "Amazon Linux 1 uses upstart: it is a systemd unit"


def test_an_option_need_turns_a_step_on(tmp_path):
    class Deep(FileStep):
        needs = (Option("dry_run", "only with --dry-run"),)

    off = run_steps(_ctx(tmp_path), "install", [Deep(tmp_path / "f", "x")])
    on = run_steps(_ctx(tmp_path, dry_run=True), "install", [Deep(tmp_path / "f", "x")])
    assert off.steps[0].summary == "only with --dry-run" and on.steps[0].status is StepStatus.PLANNED


def test_the_gate_is_a_trait_not_an_id(tmp_path):
    """A first step marked ``gate`` runs its checks when --only leaves it out, whatever its id; a first step named
    preflight that is no gate is just a step."""

    class Gate(Step):
        id, gate = "any-id", True

        def plan(self, ctx):
            return Converged("root")

    rep = run_steps(_ctx(tmp_path), "install", [Gate(), FileStep(tmp_path / "f", "x")], only=["write"])
    assert rep.steps[0].summary == "not selected (--only/--skip); its checks passed: root"
    plain = Gate()
    plain.id, plain.gate = "preflight", False
    rep = run_steps(_ctx(tmp_path), "install", [plain, FileStep(tmp_path / "f", "x")], only=["write"])
    assert rep.steps[0].summary == "not selected (--only/--skip)"


def test_confirm_is_shown_only_the_steps_it_is_about(tmp_path):
    """The runner leaves out of the confirm a step that is not ``confirmed`` (seal's stamp) and one whose needs
    are unmet, and asks nothing when nothing is left."""

    class Gate(Step):
        id, gate = "gate", True

        def plan(self, ctx):
            return Converged("root")

    class Record(FileStep):
        id, confirmed = "record", False

    shown: list[list[str]] = []

    def confirm(plans):
        shown.append([s.id for s, _ in plans])
        return True

    rep = run_steps(_ctx(tmp_path), "seal", [Gate(), Needy(tmp_path / "n", "x"), Record(tmp_path / "r", "x")],
                    confirm=confirm)
    assert shown == [] and rep.steps[0].summary == "root"
    rep = run_steps(_ctx(tmp_path), "seal", [Gate(), FileStep(tmp_path / "w", "x"), Record(tmp_path / "r2", "x")],
                    confirm=confirm)
    assert shown == [["write"]] and rep.steps[0].summary == "root; confirmed"
