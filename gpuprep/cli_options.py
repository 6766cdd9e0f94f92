"""The options install and seal share: ``--only``/``--skip`` with shell completion of their step ids, and
``--runtime``'s completion. Only typer is imported here: the step lists load when a completion asks for them, so
``gpuprep --help`` stays fast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from gpuprep.runner.steps import AnyStep

StepList = Callable[[], Sequence["AnyStep"]]


def ONLY(steps_fn: StepList) -> Any:  # noqa: N802 (an option maker, named as the option it makes)
    return typer.Option([], "--only", metavar="ID,...", help="Run only these steps (see --list-steps).",
                        autocompletion=_complete_ids(steps_fn))


def SKIP(steps_fn: StepList) -> Any:  # noqa: N802
    return typer.Option([], "--skip", metavar="ID,...", help="Skip these steps.",
                        autocompletion=_complete_ids(steps_fn))


def _complete_ids(steps_fn: StepList) -> Callable[[str], list[str]]:
    """Shell completion for --only/--skip: the step ids, after the ones already typed (`--only preflight,pa<TAB>`)."""
    def complete(incomplete: str) -> list[str]:
        done, _, last = incomplete.rpartition(",")
        prefix = f"{done}," if done else ""
        taken = set(done.split(","))
        return [prefix + s.id for s in steps_fn() if s.id.startswith(last) and s.id not in taken]
    return complete


def install_step_list() -> list[AnyStep]:
    from gpuprep.install import install_steps

    return install_steps()


def seal_step_list() -> list[AnyStep]:
    from gpuprep.seal import seal_steps

    return seal_steps()


def complete_runtime(incomplete: str) -> list[str]:
    from gpuprep.options import RUNTIME_STACKS

    return [r for r in RUNTIME_STACKS if r.startswith(incomplete)]
