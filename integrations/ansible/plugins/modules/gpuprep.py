#!/usr/bin/python
"""Ansible module: run `gpuprep --json install|seal|doctor` on the host and map its report.

- changed: install and seal report changed when their JSON status is "changed" (a step changed); in check
  mode, when a step other than a proof (gpu-check) is planned; doctor never changes anything.
- failed: install and seal fail on a non-zero exit code (docs/contract.md: 1 a step failed, 2 bad input,
  3 a precondition); doctor fails when its status is in ``fail_on`` (default critical and unknown).
- check mode runs install and seal with --dry-run; --diff shows each step's file diff.
- the report is returned whole as ``report``; doctor adds ``failing``, the ids of checks that are not ok.

It runs on the managed host's python (whichever Ansible uses there; it does not import gpuprep) with nothing
but Ansible's module_utils, and never through a shell. The program is /usr/sbin/gpuprep, where the wheelhouse's
install.sh links it (docs/packaging.md).
"""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gpuprep
short_description: Run gpuprep install, seal or doctor and report its JSON
description:
  - Runs C(gpuprep --json COMMAND) on the managed host and maps its report onto changed and failed.
  - In check mode install and seal run with C(--dry-run); with --diff each step's file diff is shown.
options:
  command:
    description: The gpuprep command.
    type: str
    required: true
    choices: [install, seal, doctor]
  args:
    description: More arguments for the command (C(--repo-file PATH), C(--keep-image REF), ...).
    type: list
    elements: str
    default: []
  executable:
    description: The gpuprep program on the host (where the wheelhouse's install.sh links it).
    type: path
    default: /usr/sbin/gpuprep
  fail_on:
    description: doctor statuses that fail the task (Nagios' ok, warning, critical, unknown).
    type: list
    elements: str
    choices: [ok, warning, critical, unknown]
    default: [critical, unknown]
author:
  - gpuprep contributors
"""

EXAMPLES = r"""
- name: Make the host an ECS GPU container host
  gpuprep.ecs_gpu.gpuprep:
    command: install
    args: [--repo-file, /root/nvidia-container-toolkit.repo]

- name: Fail on a critical or unknown doctor verdict
  gpuprep.ecs_gpu.gpuprep:
    command: doctor
    fail_on: [critical, unknown]
"""

RETURN = r"""
report:
  description: gpuprep's JSON report (docs/contract.md).
  returned: always
  type: dict
status:
  description: The report's status.
  returned: always
  type: str
failing:
  description: doctor's check ids that are not ok or skipped.
  returned: when command is doctor
  type: list
  elements: str
"""

DEFAULT_EXECUTABLE = "/usr/sbin/gpuprep"  # install.sh's link; the boot gate's and doctor timer's ExecStart
NOT_OK = ("warning", "critical", "unknown")
# Steps that only prove the host: in a dry run gpuprep lists the container run gpu-check would make
# ("planned"), which changes nothing, so check mode does not count it as a change.
PROOF_STEPS = ("gpu-check",)


def last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def result_of(command, rc, report, fail_on, check_mode=False):
    """(changed, failed, message, extra result keys) for gpuprep's exit code and JSON report."""
    status = report.get("status", "")
    if command == "doctor":
        failing = [c["id"] for c in report.get("checks", []) if c.get("status") in NOT_OK]
        failed = status in fail_on
        msg = f"gpuprep doctor: {status}" + (f": {', '.join(failing)}" if failing else "")
        return False, failed, msg, {"failing": failing}
    failed = rc != 0
    msg = f"gpuprep {command}: {status}"
    if report.get("error"):
        msg += f": {report['error']} (hint: {report.get('hint', '')})"
    if check_mode:
        planned = [step["id"] for step in report.get("steps", [])
                   if step.get("status") == "planned" and step.get("id") not in PROOF_STEPS]
        return bool(planned), failed, msg, {"planned": planned}
    return status == "changed", failed, msg, {}


def diffs_of(report):
    """Ansible's diff entries: each step's unified diff, printed as it is ("prepared")."""
    return [{"prepared": f"{step['id']}: {step['summary']}\n{step['diff']}"}
            for step in report.get("steps", []) if step.get("diff")]


def main():
    module = AnsibleModule(
        argument_spec={
            "command": {"type": "str", "required": True, "choices": ["install", "seal", "doctor"]},
            "args": {"type": "list", "elements": "str", "default": []},
            "executable": {"type": "path", "default": DEFAULT_EXECUTABLE},
            "fail_on": {"type": "list", "elements": "str", "default": ["critical", "unknown"],
                        "choices": ["ok", "warning", "critical", "unknown"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    command = p["command"]
    argv = [p["executable"], "--json", command]
    if command == "seal":
        argv.append("--yes")  # no terminal here; said explicitly all the same
    if module.check_mode and command in ("install", "seal"):
        argv.append("--dry-run")
    argv += p["args"]
    rc, out, err = module.run_command(argv, check_rc=False)
    try:
        report = json.loads(out)
    except ValueError:
        module.fail_json(msg=f"gpuprep {command} printed no JSON report (exit {rc}): {last_line(err)}",
                         rc=rc, cmd=argv, stderr=err, stdout=out)
    changed, failed, msg, extra = result_of(command, rc, report, p["fail_on"], module.check_mode)
    result = dict(changed=changed, rc=rc, cmd=argv, status=report.get("status"), report=report,
                  stderr_lines=err.splitlines()[-20:], msg=msg, **extra)
    if module._diff:
        result["diff"] = diffs_of(report)
    if failed:
        module.fail_json(**result)
    # Said explicitly: Ansible marks a result failed when it carries a non-zero rc and no "failed" key, and
    # doctor's rc is its verdict (a critical host exits 2), which fail_on decides about.
    module.exit_json(failed=False, **result)


if __name__ == "__main__":
    main()
