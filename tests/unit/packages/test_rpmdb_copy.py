"""doctor's checks read the tree's rpm database from one copy outside the root (packages/rpmdb.py, db_args), and
several of them ask at once from their threads. Before the copy was serialised two of them copied over each other
and one failed with EEXIST (`.../rpmdb/root/.rpmdb: File exists`), seen as an UNKNOWN gpu-fabric-manager and ecs-init
on a healthy host (tests/integration/test_doctor_live.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gpuprep.host import Host
from gpuprep.packages import rpmdb

pytestmark = pytest.mark.allow_subp("rpm")


def test_threads_asking_for_the_copy_at_once_share_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    db = root / "var/lib/rpm"
    db.mkdir(parents=True)
    (db / "rpmdb.sqlite").write_bytes(b"\0" * 4096)
    for i in range(400):  # many files: each thread's copy takes long enough for the others to start theirs
        (db / f"__db.{i:03d}").write_bytes(b"\0" * 4096)
    host = Host(root, env={})
    start = threading.Barrier(8)
    answers: list[object] = []

    def ask() -> None:
        start.wait()
        try:
            answers.append(rpmdb.db_args(host))
        except Exception as exc:  # the failure this test is about: said, not swallowed
            answers.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8 and all(a == answers[0] for a in answers), answers
    assert isinstance(answers[0], list) and answers[0][-1] == "/var/lib/rpm"
    host.close()
