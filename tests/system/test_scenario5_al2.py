"""Scenario 5: the Amazon Linux 2 profile: install succeeds through the yum backend's commands.

The instance carries AL2's os-release, so gpuprep picks its yum 3 profile (`yum`, yum-utils'
`repoquery`, yum-plugin-versionlock). SIMULATED, because yum 3 is the one thing this tree lacks:
`yum` is dnf, `repoquery` forwards to `dnf repoquery` (translating yum 3's `--show-duplicates`),
and dnf's versionlock plugin is pointed at yum's lock list. Everything else is real. gpuprep runs on the
tree's python3, 3.9: AL2's own is older (extras' 3.8 is its newest, below gpuprep's floor), so this stands
for an AL2 host given a newer Python (docs/packaging.md).
"""

from __future__ import annotations

import json

import image
from sim import explain, steps_by_id
from simfixtures import *  # noqa: F403  (pytest fixtures)

REPOQUERY = """#!/bin/sh
# SIMULATED yum-utils repoquery (AL2's yum 3 is not available here): forwards to dnf's.
for a in "$@"; do
  case "$a" in --show-duplicates) a=--showduplicates ;; esac
  set -- "$@" "$a"; shift
done
exec dnf -q repoquery "$@"
"""
YUM_VERSIONLOCK_CONF = "[main]\nenabled = 1\nlocklist = /etc/yum/pluginconf.d/versionlock.list\n"


def _as_al2(inst) -> None:
    inst.write("/usr/bin/repoquery", REPOQUERY, mode=0o755)
    # yum-plugin-versionlock's files, and dnf's plugin writing to the same list.
    inst.write("/etc/yum/pluginconf.d/versionlock.conf", YUM_VERSIONLOCK_CONF)
    inst.write("/etc/yum/pluginconf.d/versionlock.list", "")
    inst.write("/etc/dnf/plugins/versionlock.conf", YUM_VERSIONLOCK_CONF)


def test_al2_install_uses_yum(make_instance):
    inst = make_instance(before_boot=_as_al2, os_release=image.AL2_OS_RELEASE)
    inst.install_gpuprep()
    rc, doc, err = inst.install()
    assert doc["platform"]["name"] == "Amazon Linux 2", doc["platform"]
    assert rc == 0 and doc["status"] == "changed", explain(doc) + err
    commands = steps_by_id(doc)["packages"].get("commands", [])
    assert commands and all(c[0] == "yum" for c in commands), json.dumps(commands)
    assert inst.run(["rpm", "-q", "ecs-init"]).returncode == 0
    assert inst.run(["docker", "info", "--format", "{{.DefaultRuntime}}"]).stdout.strip() == "nvidia"
