"""A CDI spec written for another driver, as the real runtime and Engine report it: the error text is the one
recorded on the accelerator machine (one H100, Engine 26.1.5, NVIDIA's toolkit 1.20.0; the spec's libraries renamed
to driver 999.99.99), tests/fixtures/real-gpu/2026-12-08-speed/evidence.jsonl, record neg-stale-spec-cdi. Before,
the CDI route called it "dockerd could not run the container" with dockerd's log as the fix, and its detail began
mid-word (the last 300 characters of runc's wrapped message)."""

from __future__ import annotations

import json
from pathlib import Path

from gpuprep.engine import gpu_container as gc

EVIDENCE = Path(__file__).resolve().parents[2] / "fixtures" / "real-gpu" / "2026-12-08-speed" / "evidence.jsonl"


def recorded(name: str) -> str:
    return next(r for r in map(json.loads, EVIDENCE.read_text().splitlines()) if r["name"] == name)["stderr"]


def test_the_cdi_route_names_the_stale_spec_and_its_fix():
    message = recorded("neg-stale-spec-cdi")
    assert gc.classify_cdi_error(message) == gc.CDI_INJECTION
    link, summary, hint = gc._explain_cdi(gc.CDI_INJECTION, message, {}, "cuda-proof:latest", "")
    assert "the CDI spec does not fit this host" in summary
    detail = summary.split("does not fit this host: ", 1)[1]
    assert detail.startswith('error mounting "/usr/local/nvidia/lib64/libEGL_nvidia.so.999.99.99"'), detail
    assert "nvidia-ctk cdi generate" in hint


def test_the_runtimes_route_says_the_same_not_that_its_binary_cannot_run():
    """cdi mode: NVIDIA's runtime adds the spec's mounts to the container of ECS's route; runc fails the same way."""
    message = recorded("neg-stale-spec-cdi")
    assert gc.classify_start_error(message) == gc.RUNTIME_INJECT
    link, summary, hint = gc._explain(gc.RUNTIME_INJECT, message, {"DefaultRuntime": "nvidia"}, "img")
    assert "a spec written for another driver" in summary and "libEGL_nvidia.so.999.99.99" in summary
    assert "nvidia-ctk cdi generate" in hint


def test_a_long_engine_error_is_cut_at_a_word():
    detail = gc.engine_detail("Error response from daemon: " + "word " * 100)
    assert detail.endswith("word ...") and len(detail) <= 304
