"""The README is a guide (issue 26 item 9): its first page takes a new user from nothing to a sealed image and a
green doctor; the reference lives in docs/. What a new user trips on without it is tested here: the builder's S3
read, the wait for cloud-init before imaging, the cluster name, the kept image; repeated text and issue numbers."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```\n(.*?)^```", text, re.S | re.M)


def test_the_builder_user_data_keeps_the_image_it_proves_the_gpus_in():
    script = next(b for b in fenced_blocks(README) if b.startswith("#!/bin/bash\n"))
    line = next(x for x in script.splitlines() if x.startswith("gpuprep "))
    image = re.search(r"gpuprep install .*--image (\S+)", line)
    kept = re.search(r"gpuprep seal .*--keep-image (\S+)", line)
    assert image and kept and image.group(1) == kept.group(1), line


def test_the_guide_names_each_step_a_first_image_needs_in_order():
    guide = README.split("\n## ", 2)[1]  # the first section after the introduction
    steps = ["make dist", "s3:GetObject", "#!/bin/bash", "cloud-init status --wait", "aws ec2 create-image",
             "ECS_CLUSTER=", "sudo gpuprep doctor"]
    where = [guide.find(s) for s in steps]
    assert -1 not in where, dict(zip(steps, where))
    assert where == sorted(where), dict(zip(steps, where))


def test_no_issue_numbers_and_no_paragraph_twice():
    assert not re.search(r"\bissues? \d+", README)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", README) if len(p.split()) > 12]
    assert len(paragraphs) == len(set(paragraphs))


def test_the_reference_it_points_at_exists():
    for target in re.findall(r"\]\(((?:docs|integrations|tests|bench)/[^)#]+|CHANGELOG\.md)", README):
        assert (REPO / target).exists(), target
    for doc in ("docs/reference.md", "docs/checks.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)", text):
            assert (REPO / doc).parent.joinpath(target).resolve().exists(), f"{doc}: {target}"
