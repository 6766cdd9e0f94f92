"""daemon.json editing (gpuprep/engine/daemon_config.py) through the ``docker-runtime`` step.

Pure: a fixture host tree under tmp_path, no Engine (with ``--root`` and no DOCKER_HOST the step has no
dockerd to validate with, and says so). Every case runs in dry-run mode (nothing changes, the diff
is shown), for real, and again (the second run reports ``ok`` and writes nothing). The cases include
those NVIDIA's own docker config editor tests cover (nvidia-container-toolkit
``pkg/config/engine/docker``: adding to ``{}``, to other runtimes, with other top-level keys, over an
existing default-runtime, an existing nvidia entry with another path) and those it gets wrong
(docs/domain.md): null runtimes, features, runtimeArgs, order, no rewrite, big numbers, non-ASCII, links.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import FIXTURES

from gpuprep.engine import daemon_config
from gpuprep.engine.steps import DockerRuntimeStep
from gpuprep.errors import BadInput, StepFailed
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.packages.steps import PackagesRun
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps

pytestmark = pytest.mark.allow_subp('ok', 'bad', 'old', 'rpm')

RUNTIME = "/usr/bin/nvidia-container-runtime"
DJ = "etc/docker/daemon.json"
WANTED_NEW = {"runtimes": {"nvidia": {"path": RUNTIME, "runtimeArgs": []}}, "default-runtime": "nvidia"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", r / "etc/os-release")
    return r


def run(root: Path, *, dry_run: bool = False, packages: dict | None = None, **options):
    """docker-runtime alone; ``packages``: what the package steps of the same run would have handed on."""
    host = Host(root, env={"PATH": os.environ.get("PATH", "")})
    ctx = Context(host, detect(host), InstallOptions(dry_run=dry_run, **options))
    for key, value in (packages or {}).items():
        setattr(ctx.shared(PackagesRun), key, value)
    report = run_steps(ctx, "install", [DockerRuntimeStep()])
    return report, report.steps[0], ctx


def snapshot(path: Path) -> tuple[bytes, int] | None:
    if not path.exists():
        return None
    return path.read_bytes(), path.stat().st_mtime_ns


def backups(root: Path) -> list[Path]:
    return sorted((root / "etc/docker").glob("daemon.json.gpuprep-*"))


def converge(root: Path, **options) -> str:
    """dry-run (changes nothing), real (changes), real again (ok, writes nothing); the new text."""
    path = root / DJ
    before = snapshot(path)
    _, step, _ = run(root, dry_run=True, **options)
    assert step.status is StepStatus.PLANNED, step.summary
    assert step.diff.startswith("--- ") and "+++ /etc/docker/daemon.json" in step.diff
    assert snapshot(path) == before, "dry-run changed the file"
    assert backups(root) == []

    report, step, _ = run(root, **options)
    assert step.status is StepStatus.CHANGED, step.summary
    assert report.exit_code == 0
    after = snapshot(path)
    assert after is not None and after != before

    for dry in (False, True):
        _, again, _ = run(root, dry_run=dry, **options)
        assert again.status is StepStatus.OK, again.summary
        assert snapshot(path) == after, "a converged run rewrote the file"
    return path.read_text()


def write(root: Path, text: str, mode: int = 0o644) -> Path:
    p = root / DJ
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    os.utime(p, ns=(1_000_000_000, 1_000_000_000))  # an old mtime, so a rewrite would show
    return p


# -- NVIDIA's own cases -----------------------------------------------------------------------
def test_missing_file_and_directory_are_created_0644_0755(root):
    text = converge(root)
    assert json.loads(text) == WANTED_NEW
    assert text == json.dumps(WANTED_NEW, indent=4) + "\n"
    assert stat.S_IMODE((root / DJ).stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "etc/docker").stat().st_mode) == 0o755
    assert backups(root) == []  # nothing to back up


@pytest.mark.parametrize("initial", ["{}", "{}\n", "", "  \n\t\n"])
def test_adding_to_empty_config(root, initial):
    write(root, initial)
    assert json.loads(converge(root)) == WANTED_NEW
    assert len(backups(root)) == 1


def test_other_runtimes_are_kept_and_nvidia_added_after_them(root):
    write(root, json.dumps({"runtimes": {"crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}}}, indent=2))
    config = json.loads(converge(root))
    assert list(config["runtimes"]) == ["crun", "nvidia"]
    assert config["runtimes"]["crun"] == {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}
    assert config["runtimes"]["nvidia"] == {"path": RUNTIME, "runtimeArgs": []}


def test_other_top_level_keys_and_their_order_are_kept(root):
    original = {"storage-driver": "overlay2", "log-driver": "json-file",
                "log-opts": {"max-size": "10m", "max-file": "3"}, "live-restore": True}
    write(root, json.dumps(original, indent=2) + "\n")
    config = json.loads(converge(root))
    assert list(config) == [*original, "runtimes", "default-runtime"]
    assert {k: config[k] for k in original} == original


def test_existing_default_runtime_is_replaced_in_place(root):
    write(root, json.dumps({"default-runtime": "runc", "debug": False}, indent=2))
    text = converge(root)
    config = json.loads(text)
    assert config["default-runtime"] == "nvidia"
    assert list(config) == ["default-runtime", "debug", "runtimes"]


def test_existing_nvidia_entry_with_another_path_keeps_its_fields_and_runtime_args(root):
    write(root, json.dumps({"runtimes": {"nvidia": {"path": "/opt/old/nvidia-container-runtime",
                                                    "runtimeArgs": ["--log", "/var/log/nv.log"],
                                                    "x-vendor": {"keep": 1}}}}, indent=4))
    config = json.loads(converge(root))
    assert config["runtimes"]["nvidia"] == {"path": RUNTIME, "runtimeArgs": ["--log", "/var/log/nv.log"],
                                            "x-vendor": {"keep": 1}}
    assert list(config["runtimes"]["nvidia"]) == ["path", "runtimeArgs", "x-vendor"]


# -- what nvidia-ctk gets wrong ---------------------------------------------------------------
def test_converged_file_is_not_rewritten_whatever_its_formatting(root):
    # Odd formatting that a rewrite would normalise: the bytes and mtime must stay.
    text = '{"default-runtime":"nvidia",\n   "runtimes":{ "nvidia":{"path":"' + RUNTIME + '"} } }'
    p = write(root, text)
    before = snapshot(p)
    for dry in (True, False, False):
        _, step, _ = run(root, dry_run=dry)
        assert step.status is StepStatus.OK, step.summary
    assert snapshot(p) == before
    assert backups(root) == []


def test_features_are_kept(root):
    write(root, json.dumps({"features": {"cdi": True, "buildkit": False}}, indent=2))
    assert json.loads(converge(root))["features"] == {"cdi": True, "buildkit": False}


def test_runtime_args_are_written_never_args(root):
    text = converge(root)
    assert '"runtimeArgs": []' in text and '"args"' not in text


def test_an_nvidia_ctk_args_field_is_left_as_it_is(root):
    write(root, json.dumps({"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}))
    config = json.loads(converge(root))
    assert config["runtimes"]["nvidia"] == {"args": [], "path": RUNTIME}


def test_big_integers_and_numbers_keep_their_text(root):
    text = ('{\n  "max-concurrent-downloads": 123456789012345678901234567890,\n  "ratio": 1.10,\n'
            '  "huge": 1e400,\n  "neg": -0.0\n}\n')
    write(root, text)
    new = converge(root)
    for literal in ("123456789012345678901234567890", "1.10", "1e400", "-0.0"):
        assert literal in new


def test_non_ascii_is_kept_as_written(root):
    write(root, json.dumps({"labels": ["owner=José", "team=機械学習"]}, ensure_ascii=False, indent=2))
    new = converge(root)
    assert "owner=José" in new and "team=機械学習" in new and "\\u" not in new


@pytest.mark.parametrize("indent", ["  ", "    ", "\t", "   "])
def test_the_files_indentation_is_kept(root, indent):
    write(root, json.dumps({"debug": True, "log-opts": {"max-size": "1m"}}, indent=indent) + "\n")
    new = converge(root)
    assert new == json.dumps({"debug": True, "log-opts": {"max-size": "1m"}, **WANTED_NEW}, indent=indent) + "\n"


def test_a_one_line_file_stays_on_one_line_and_without_final_newline(root):
    write(root, '{"debug": true}')
    new = converge(root)
    assert "\n" not in new
    assert json.loads(new) == {"debug": True, **WANTED_NEW}


def test_backup_is_timestamped_beside_the_file_with_the_old_bytes(root):
    write(root, '{"debug": true}\n')
    converge(root)
    [backup] = backups(root)
    assert backup.read_text() == '{"debug": true}\n'


def test_mode_and_owner_are_kept(root):
    p = write(root, "{}", mode=0o600)
    if os.geteuid() == 0:
        os.chown(p, 1234, 5678)
    converge(root)
    st = p.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_symlink_is_followed_and_kept(root):
    target = root / "srv/config/daemon.json"
    target.parent.mkdir(parents=True)
    target.write_text('{"debug": true}\n')
    (root / "etc/docker").mkdir()
    os.symlink("../../srv/config/daemon.json", root / DJ)
    converge(root)
    assert os.readlink(root / DJ) == "../../srv/config/daemon.json"
    assert json.loads(target.read_text()) == {"debug": True, **WANTED_NEW}
    assert list(target.parent.glob("daemon.json.gpuprep-*")), "backup beside the link's target"


def test_runtime_path_comes_from_the_option_then_the_packages_step(root):
    assert json.loads(converge(root, runtime_path="/opt/nv/runtime"))["runtimes"]["nvidia"]["path"] == "/opt/nv/runtime"
    (root / DJ).unlink()
    _, step, _ = run(root, packages={"runtime_path": "nvidia-container-runtime"})
    assert json.loads((root / DJ).read_text())["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"


def test_no_default_runtime_registers_only(root):
    write(root, json.dumps({"default-runtime": "runc"}))
    config = json.loads(converge(root, default_runtime=False))
    assert config == {"default-runtime": "runc", "runtimes": {"nvidia": {"path": RUNTIME, "runtimeArgs": []}}}


# -- refused input: exit 2, one line naming the file, nothing touched ------------------------
BAD = {
    "invalid JSON": ('{"debug": true,,}', "invalid JSON"),
    "duplicate key": ('{"runtimes": {}, "runtimes": {}}', 'duplicate key "runtimes"'),
    "trailing text": ('{"debug": true} {"x": 1}', "text after the JSON value"),
    "top-level list": ('[{"debug": true}]', "the top level is a list, expected an object"),
    "top-level string": ('"hello"', "the top level is a string"),
    "runtimes null": ('{"runtimes": null}', '"runtimes" is null, expected an object'),
    "runtimes list": ('{"runtimes": []}', '"runtimes" is a list, expected an object'),
    "nvidia entry string": ('{"runtimes": {"nvidia": "/usr/bin/x"}}', '"runtimes"."nvidia" is a string'),
    "default-runtime number": ('{"default-runtime": 1}', '"default-runtime" is a number'),
    "NaN": ('{"x": NaN}', "invalid JSON"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_input_exits_2_and_touches_nothing(root, case, dry_run):
    text, problem = BAD[case]
    p = write(root, text)
    before = snapshot(p)
    for _ in range(2):
        report, step, _ = run(root, dry_run=dry_run)
        assert step.status is StepStatus.FAILED
        assert report.exit_code == 2
        assert problem in step.summary and str(p) in step.summary
        assert "\n" not in step.summary and step.hint
    assert snapshot(p) == before
    assert backups(root) == []


def test_a_directory_at_the_path_exits_2(root):
    (root / DJ).mkdir(parents=True)
    report, step, _ = run(root)
    assert report.exit_code == 2 and "is a directory" in step.summary
    assert (root / DJ).is_dir()


def test_parse_errors_are_badinput_with_position():
    with pytest.raises(BadInput, match=r"line 2 column 1"):
        daemon_config.parse('{"a": 1}\n}', "/x/daemon.json")


# -- Amazon Linux's /etc/docker-runtimes.d ------------------------------------------------------
def _runtimes_dir_nvidia(root: Path) -> None:
    d = root / "etc/docker-runtimes.d"
    d.mkdir(parents=True)
    # The AL2023 ECS GPU AMI links it to the runtime; an absolute link resolves inside the root.
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/nvidia-container-runtime").write_text("#!/bin/sh\n")
    (root / "usr/bin/nvidia-container-runtime").chmod(0o755)
    os.symlink("/usr/bin/nvidia-container-runtime", d / "nvidia")


def test_runtimes_dir_registers_nvidia_so_daemon_json_only_sets_the_default(root):
    _runtimes_dir_nvidia(root)
    write(root, json.dumps({"debug": True}))
    assert json.loads(converge(root)) == {"debug": True, "default-runtime": "nvidia"}


def test_runtimes_dir_and_a_daemon_json_nvidia_entry_define_it_once(root):
    _runtimes_dir_nvidia(root)
    write(root, json.dumps({"runtimes": {"nvidia": {"path": "/other"}}, "default-runtime": "nvidia"}))
    assert json.loads(converge(root)) == {"default-runtime": "nvidia"}


# -- packages that replace or push aside daemon.json ------------------------------------------
# nvidia-docker2 2.5.0+'s daemon.json (bare runtime name since 2.1.0), shipped as %config.
PACKAGE_FILE = '{\n    "runtimes": {\n        "nvidia": {\n            "path": "nvidia-container-runtime",\n' \
               '            "runtimeArgs": []\n        }\n    }\n}\n'
USER_FILE = {"log-driver": "journald", "runtimes": {"crun": {"path": "/usr/bin/crun"}},
             "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}


@pytest.mark.parametrize("suffix", [".rpmorig", ".rpmsave"])
def test_rpm_leftover_is_merged_back_then_renamed(root, suffix):
    write(root, PACKAGE_FILE)
    leftover = root / (DJ + suffix)
    leftover.write_text(json.dumps(USER_FILE, indent=2))
    config = json.loads(converge(root))
    assert config["log-driver"] == "journald"
    assert config["default-ulimits"] == USER_FILE["default-ulimits"]
    assert list(config["runtimes"]) == ["crun", "nvidia"]
    assert config["runtimes"]["nvidia"] == {"path": RUNTIME, "runtimeArgs": []}
    assert config["default-runtime"] == "nvidia"
    assert not leftover.exists()
    [merged] = list(leftover.parent.glob(f"daemon.json{suffix}.gpuprep-merged-*"))
    assert json.loads(merged.read_text()) == USER_FILE  # the user's original stays on disk


def test_rpm_leftover_alone_is_renamed_even_when_the_file_is_already_converged(root):
    write(root, json.dumps(WANTED_NEW, indent=4) + "\n")
    leftover = root / (DJ + ".rpmsave")
    leftover.write_text("{}")
    _, step, _ = run(root, dry_run=True)
    assert step.status is StepStatus.PLANNED and leftover.exists()
    _, step, _ = run(root)
    assert step.status is StepStatus.CHANGED and not leftover.exists()
    _, step, _ = run(root)
    assert step.status is StepStatus.OK


def test_a_broken_rpm_leftover_exits_2_naming_it(root):
    write(root, PACKAGE_FILE)
    (root / (DJ + ".rpmorig")).write_text("{not json")
    report, step, _ = run(root)
    assert report.exit_code == 2 and "daemon.json.rpmorig" in step.summary
    assert (root / DJ).read_text() == PACKAGE_FILE


def test_nvidia_docker2_up_to_2_4_0_replaced_the_file_and_the_copy_taken_before_is_merged(root):
    # nvidia-docker2 <= 2.4.0 shipped daemon.json as a plain file: the install replaced the user's.
    write(root, PACKAGE_FILE)
    state = {"changed": True, "daemon_json_before": json.dumps(USER_FILE)}
    _, step, _ = run(root, dry_run=True, packages=state)
    assert step.status is StepStatus.PLANNED and "before the packages step" in step.summary
    _, step, _ = run(root, packages=state)
    assert step.status is StepStatus.CHANGED
    config = json.loads((root / DJ).read_text())
    assert config["log-driver"] == "journald" and "crun" in config["runtimes"]
    # The same run's state again (the step re-planned): nothing more to merge.
    _, step, _ = run(root, packages=state)
    assert step.status is StepStatus.OK


# -- pure helpers -----------------------------------------------------------------------------
def test_merge_user_config_lets_the_user_win():
    merged = daemon_config.merge_user_config({"a": 1, "r": {"x": {"path": "u"}}},
                                             {"a": 2, "b": 3, "r": {"x": {"path": "p"}, "y": {}}})
    assert merged == {"a": 1, "r": {"x": {"path": "u"}, "y": {}}, "b": 3}


def test_detect_indent():
    assert daemon_config.detect_indent(None) == "    "
    assert daemon_config.detect_indent('{"a": 1}') is None
    assert daemon_config.detect_indent('{\n\t"a": 1\n}') == "\t"
    assert daemon_config.detect_indent('{\n"a": 1\n}') == ""


# -- dockerd --validate (Engine 23+) ------------------------------------------------------------
def _fake_dockerd(path: Path, *, has_validate: bool, rejects: bool) -> str:
    """SIMULATED dockerd 23+, so the unit tests need no provisioned Engine; the real Engine 26's --validate is
    asked in tests/integration/test_validate_root.py."""
    flag = "--validate" if has_validate else "--debug"
    verdict = ('echo "unable to configure the Docker daemon with file $3: the following directives '
               'do not match any configuration option: bogus" >&2; exit 1' if rejects else 'echo "configuration OK"')
    path.write_text("#!/bin/sh\n"
                    f'if [ "$1" = "--help" ]; then echo "      {flag}    a flag"; exit 0; fi\n'
                    f'if [ "$1" = "--validate" ]; then {verdict}; exit 0; fi\n'
                    "exit 2\n")
    path.chmod(0o755)
    return str(path)


def test_validate_with_dockerd_23(tmp_path):
    host = Host("/", env={"PATH": os.environ.get("PATH", "")})
    ok = _fake_dockerd(tmp_path / "ok", has_validate=True, rejects=False)
    assert daemon_config.validate_with_dockerd(host, "{}", ok) == f"validated by {ok} --validate"
    bad = _fake_dockerd(tmp_path / "bad", has_validate=True, rejects=True)
    with pytest.raises(StepFailed, match="dockerd rejects the new daemon.json: .*bogus"):
        daemon_config.validate_with_dockerd(host, '{"bogus": 1}', bad)
    old = _fake_dockerd(tmp_path / "old", has_validate=False, rejects=True)
    assert "has no --validate" in daemon_config.validate_with_dockerd(host, "{}", old)


def test_a_crlf_daemon_json_is_edited_and_keeps_its_settings(tmp_path):
    """A daemon.json written on Windows (CRLF) must be editable: the 'changed while planning' guard once
    compared newline-translated text with the raw plan and refused every such file."""
    from gpuprep.engine import daemon_config
    from gpuprep.host import Host

    path = tmp_path / "etc/docker/daemon.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{\r\n    "log-driver": "journald"\r\n}\r\n')
    host = Host(tmp_path)
    edit = daemon_config.plan_edit(host, "/etc/docker/daemon.json", "/usr/bin/nvidia-container-runtime")
    assert edit.changes_file
    daemon_config.apply_edit(host, edit)
    data = json.loads(path.read_text())
    assert data["log-driver"] == "journald" and data["runtimes"]["nvidia"]["runtimeArgs"] == []
    assert data["default-runtime"] == "nvidia"


# -- after `nvidia-ctk runtime configure --runtime=docker` ----------------------------------------
# What NVIDIA's nvidia-ctk 1.18.0 and 1.20.0 wrote here (tests/integration/test_nvidia_ctk_coexist.py runs them) for
# `--set-as-default --cdi.enabled` over {"features": {"containerd-snapshotter": false}, "log-driver": "json-file",
# "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--debug"]}}}.
CTK_WROTE = """{
    "default-runtime": "nvidia",
    "features": {
        "cdi": true
    },
    "log-driver": "json-file",
    "runtimes": {
        "nvidia": {
            "args": [],
            "path": "nvidia-container-runtime"
        }
    }
}"""
BEFORE_CTK = {"features": {"containerd-snapshotter": False}, "log-driver": "json-file", "default-runtime": "nvidia",
              "runtimes": {"nvidia": {"path": RUNTIME, "runtimeArgs": ["--debug"]}}}


def toolkit_runtime(root: Path) -> None:
    runtime = root / RUNTIME.lstrip("/")
    runtime.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_text("#!/bin/sh\n")
    runtime.chmod(0o755)


def test_nvidia_ctks_bare_runtime_name_is_kept_where_dockerd_finds_the_toolkit_runtime_by_it(root):
    toolkit_runtime(root)
    write(root, CTK_WROTE)
    before = snapshot(root / DJ)
    _, step, _ = run(root)
    assert step.status is StepStatus.OK, step.summary  # no rewrite to the absolute path, so no reload
    assert snapshot(root / DJ) == before


def test_nvidia_ctks_bare_runtime_name_found_elsewhere_is_pointed_at_the_runtime(root):
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/nvidia-container-runtime").write_text("#!/bin/sh\n")  # found first on dockerd's PATH
    toolkit_runtime(root)
    write(root, CTK_WROTE)
    text = converge(root)
    assert json.loads(text)["runtimes"]["nvidia"] == {"args": [], "path": RUNTIME}


def test_arguments_under_nvidia_ctks_args_move_to_runtime_args_in_place(root):
    toolkit_runtime(root)
    write(root, CTK_WROTE.replace('"args": []', '"args": ["--debug"]'))
    text = converge(root)
    assert json.loads(text)["runtimes"]["nvidia"] == {"runtimeArgs": ["--debug"], "path": "nvidia-container-runtime"}
    assert list(json.loads(text)["runtimes"]["nvidia"]) == ["runtimeArgs", "path"]


def test_what_nvidia_ctk_dropped_comes_back_from_gpupreps_newest_backup(root):
    toolkit_runtime(root)
    write(root, CTK_WROTE)
    (root / f"{DJ}.gpuprep-20261201T000000000000Z").write_text(json.dumps({"features": {"buildkit": False}}))
    (root / f"{DJ}.gpuprep-20261207T101010123456Z").write_text(json.dumps(BEFORE_CTK))
    _, step, _ = run(root, dry_run=True)
    assert "put back features containerd-snapshotter" in step.summary and 'runtimeArgs ["--debug"]' in step.summary
    assert "daemon.json.gpuprep-20261207T101010123456Z" in step.summary
    _, step, _ = run(root)
    assert step.status is StepStatus.CHANGED, step.summary
    config = json.loads((root / DJ).read_text())
    assert config["features"] == {"containerd-snapshotter": False, "cdi": True}
    assert config["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime", "runtimeArgs": ["--debug"]}
    assert config["log-driver"] == "json-file" and config["default-runtime"] == "nvidia"
    _, again, _ = run(root)
    assert again.status is StepStatus.OK, again.summary


def test_nothing_is_put_back_without_nvidia_ctks_mark_or_a_backup(root):
    toolkit_runtime(root)
    write(root, CTK_WROTE)
    assert run(root, dry_run=True)[1].status is StepStatus.OK  # no backup: nothing known to be lost
    (root / f"{DJ}.gpuprep-20261207T101010123456Z").write_text(json.dumps(BEFORE_CTK))
    write(root, CTK_WROTE.replace('"args": [],\n', ""))  # features {"cdi": true} set by a person: theirs to keep
    assert run(root, dry_run=True)[1].status is StepStatus.OK
