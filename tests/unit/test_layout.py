"""The house rules of gpuprep's source tree (issue 13), checked on the source itself."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SOURCES = sorted([*(REPO / "gpuprep").rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")])


def test_citations_name_documents_of_this_repository():
    """A comment that cites a document someone who clones gpuprep cannot open is no citation: the domain
    and test-bed facts live in docs/, and every docs/ file cited exists."""
    outside, missing = [], []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        outside += [f"{rel}: {m}" for m in re.findall(r"\b(?:DOMAIN|TESTBED|DESIGN|STYLE)\.md\b", text)]
        missing += [f"{rel}: {m}" for m in set(re.findall(r"\bdocs/[\w./-]+\.md\b", text)) if not (REPO / m).is_file()]
    assert not outside, f"citations of documents outside the repository: {outside[:10]}"
    assert not missing, f"citations of docs/ files that do not exist: {missing[:10]}"
