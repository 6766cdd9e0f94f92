"""platform checks that EC2 alone can answer (issue 28, item 6): scheduled maintenance. (Item 5, EFA, needs the
Engine's daemon.json too: ``engine/efa_checks.py``.)

Scheduled events: IMDSv2 ``GET /latest/meta-data/events/maintenance/scheduled`` answers a JSON list of
``{"Code", "Description", "NotBefore", "NotAfter", "State", "EventId"}``; ``Code`` is ``instance-reboot``,
``system-reboot``, ``system-maintenance``, ``instance-retirement`` or ``instance-stop``; ``State`` ``active`` is
pending, ``completed`` / ``canceled`` are done (docs.aws.amazon.com/AWSEC2/latest/UserGuide/
viewing_scheduled_events.html). Asked within a second, straight to the service (no proxy), and fail-open: no answer
is ``skipped``, never a finding (facebookresearch/gcm and awslabs' GPU cluster health check do the same).
"""

from __future__ import annotations

import json
import time
from typing import Any

from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

SCHEDULED = "/latest/meta-data/events/maintenance/scheduled"
MAINTENANCE_BUDGET_S = 1.0



# -- item 6: scheduled maintenance --------------------------------------------------------------------------------
@probe
def probe_scheduled_events(p: Probes) -> list[dict[str, Any]] | str:
    """The scheduled events, or why none could be read (a string: fail-open)."""
    from gpuprep.ec2.imds import endpoint_for, get_metadata, on_ec2

    endpoint, named = endpoint_for(p.host)
    if endpoint is None or (not named and not on_ec2(p.host)):
        return "not an EC2 instance, or its metadata turned off"
    import http.client

    try:
        status, body, _ = get_metadata(endpoint, time.monotonic() + MAINTENANCE_BUDGET_S, SCHEDULED)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        why = str(exc) or type(exc).__name__
        return f"the instance metadata service did not answer within {MAINTENANCE_BUDGET_S:g}s ({why})"
    if status == 404:
        return []  # no event was ever scheduled
    if status != 200:
        return f"{SCHEDULED} answered HTTP {status}"
    try:
        events = json.loads(body or "[]")
    except ValueError:
        return f"{SCHEDULED} is not JSON: {body[:60]!r}"
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else f"{SCHEDULED}: not a list"


def check_maintenance(probes: Probes) -> Verdict:
    events = probe_scheduled_events(probes)
    if isinstance(events, str):
        raise NotApplicable(events)
    pending = [e for e in events if str(e.get("State", "active")).lower() == "active"
               and not str(e.get("Description", "")).startswith(("[Completed]", "[Canceled]"))]
    data = {"events": events}
    if pending:
        said = "; ".join(f"{e.get('Code', 'event')} not before {e.get('NotBefore', '?')} ({e.get('EventId', '')})"
                         for e in pending)
        return Verdict(Status.WARNING, f"EC2 scheduled maintenance: {said}",
                       "drain the instance before the date (`aws ecs update-container-instances-state --cluster C "
                       "--container-instances ARN --status DRAINING`), then stop and start it to move to other "
                       "hardware now, or reschedule: `aws ec2 modify-instance-event-start-time --instance-id ID "
                       f"--instance-event-id {pending[0].get('EventId', 'EVENT')} --not-before DATE`", data)
    return Verdict(Status.OK, "no EC2 maintenance scheduled for this instance", data=data)


CHECKS = [
    Check("ec2-maintenance", "platform", "no EC2 scheduled maintenance (retirement, reboot, stop) pending for this "
          "instance (IMDSv2, within 1 s, fail-open)", check_maintenance, timeout=4),
]
