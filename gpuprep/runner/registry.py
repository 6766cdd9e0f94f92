"""The lists of steps and checks, refused when they are wrong: a duplicate id, a retired id used again, a check
in a group the report does not order, a need naming no option, a gate anywhere but first.

Each command builds its list through here (``install.py``, ``seal.py``, ``doctor.py``), so a mistake in a list
stops every run of that command, ``--list-steps`` and ``--list-checks`` included, and the unit tests that build
the lists, before any host is touched. Retired ids are data, as cloud-init's ``REMOVED_MODULES``
(``cloudinit/config/modules.py``): an id never changes meaning and a retired one is never reused
(docs/contract.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from gpuprep.runner.checks import Check
from gpuprep.runner.needs import Option
from gpuprep.runner.steps import AnyStep


class RegistryError(Exception):
    """A list of steps or checks that breaks docs/contract.md's rules: a bug in gpuprep, never the user's."""


def _refuse_ids(kind: str, items: Sequence[AnyStep] | Sequence[Check], retired: Mapping[str, str]) -> None:
    seen: set[str] = set()
    for item in items:
        if not item.id:
            raise RegistryError(f"a {kind} without an id: {item!r}")
        if item.id in seen:
            raise RegistryError(f"{kind} id {item.id} is listed twice")
        if item.id in retired:
            raise RegistryError(f"{kind} id {item.id} was retired ({retired[item.id]}) and is never reused")
        seen.add(item.id)


def _refuse_options(kind: str, item_id: str, needs: Sequence[object], options: type) -> None:
    fields = {f.name for f in dataclasses.fields(options)}
    for need in needs:
        if isinstance(need, Option) and need.name not in fields:
            raise RegistryError(f"{kind} {item_id} needs option {need.name}, which {options.__name__} does not have")


def steps(listed: Sequence[AnyStep], options: type, retired: Mapping[str, str]) -> list[AnyStep]:
    """``listed``, in its order, once it is a valid list of a command's steps; ``options`` is the command's options
    class (what an ``Option`` need may name)."""
    _refuse_ids("step", listed, retired)
    for i, step in enumerate(listed):
        if step.gate and i:
            raise RegistryError(f"step {step.id} is a gate but not first: the runner asks only the first")
        _refuse_options("step", step.id, step.needs, options)
    return list(listed)


def checks(listed: Sequence[Check], groups: Sequence[str], options: type, retired: Mapping[str, str]) -> list[Check]:
    """``listed`` in report order: by ``groups``' order, and in each group in the order listed."""
    _refuse_ids("check", listed, retired)
    for check in listed:
        if check.group not in groups:
            raise RegistryError(f"check {check.id}: group {check.group} is none of {', '.join(groups)}")
        _refuse_options("check", check.id, check.needs, options)
    return sorted(listed, key=lambda c: groups.index(c.group))
