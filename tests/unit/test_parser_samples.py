"""Each parser's docstring shows a sample of what it reads and what it makes of it (issue 27 item 6; insights-core's
``parsers/nvidia.py`` and its doctest test are the model). The samples run here as doctests, so a docstring cannot
drift from the code: nvidia-smi's CSV and ``-q`` output, the container's nvidia-smi, the host's nvidia-smi UUIDs,
/proc/driver/nvidia/version, /proc/modules (lsmod), /proc/locks, /proc/PID/stat, the kernel log and /dev/kmsg, rpm
and repoquery records, ``dnf updateinfo``, ecs.config and ecs-init's nvidia-gpu-info.json. The samples are typed out
from real output (tests/fixtures/nvidia-smi holds whole files); nothing runs but the parsers."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

PARSERS = (
    "gpuprep.gpu.query",
    "gpuprep.engine.gpu_container",
    "gpuprep.gpu.devices",
    "gpuprep.gpu.view",
    "gpuprep.gpu.kernel_log",
    "gpuprep.packages.rpmdb",
    "gpuprep.packages.evr",
    "gpuprep.packages.advisories",
    "gpuprep.packages.lock",
    "gpuprep.ecs.config",
    "gpuprep.procfs",
    "gpuprep.poll",  # not a parser: poll_until's own examples
)


@pytest.mark.parametrize("name", PARSERS)
def test_the_samples_in_the_docstrings_parse_as_shown(name):
    module = importlib.import_module(name)
    said: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=said.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0, f"{name}: no example in its docstrings"
    assert results.failed == 0, "".join(said)


@pytest.mark.parametrize("name", PARSERS[:-1])
def test_every_parser_shows_a_sample(name):
    """A module-level ``parse*`` function (or a ``parse`` classmethod) of these modules has its example."""
    module = importlib.import_module(name)
    found = [(n, f) for n, f in vars(module).items() if inspect.isfunction(f) and f.__module__ == name]
    found += [(f"{c}.parse", vars(k)["parse"].__func__) for c, k in vars(module).items()
              if inspect.isclass(k) and k.__module__ == name and isinstance(vars(k).get("parse"), classmethod)]
    parsers = [n for n, f in found if n.split(".")[-1].startswith(("parse", "_parse"))]
    assert parsers, f"{name} has no parser"
    bare = [n for n, f in found if n in parsers and ">>>" not in (f.__doc__ or "")
            and n != "parse_smi_csv"]  # its example is _parse_smi_csv's, the function it wraps with an error
    assert not bare, f"parsers without a sample in their docstring: {bare}"
