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

from gpuprep.fixes import Fix
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


@probe
def probe_instance_place(p: Probes) -> tuple[str, str] | None:
    """The instance's id and region (one IMDSv2 token, within the same budget), for the commands that move it to
    other hardware; None where the metadata service does not say."""
    import http.client

    from gpuprep.ec2.imds import ask_paths, endpoint_for, on_ec2

    endpoint, named = endpoint_for(p.host)
    if endpoint is None or (not named and not on_ec2(p.host)):
        return None
    try:
        found, _ = ask_paths(endpoint, time.monotonic() + MAINTENANCE_BUDGET_S,
                             ["meta-data/instance-id", "meta-data/placement/region"])
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return found["meta-data/instance-id"], found["meta-data/placement/region"]


def maintenance_fixes(probes: Probes, event: dict[str, Any]) -> list[Fix]:
    """Drain before the event's date, then move to other hardware now (stop, wait, start: a stop and start, not a
    reboot, moves an EC2 instance), or reschedule it. The moves are AWS API calls, typed where the AWS CLI has
    credentials: stopping the instance ends a session on it. The ECS drain needs the container instance's ARN, and
    the reschedule a date, which only the user knows: said in words."""
    found = [Fix(f"drain it before {event.get('NotBefore', 'the date')}: set its ECS container instance to DRAINING "
                 "(aws ecs update-container-instances-state), so no task is cut off")]
    place = probe_instance_place(probes)
    if place is not None:
        instance, region = place
        for verb, why in (("stop-instances", "move it to other hardware now (from a machine with AWS "
                                             "credentials: stopping it ends a session on it): stop it"),
                          ("wait", "wait until it has stopped"), ("start-instances", "start it")):
            found.append(Fix(why, ("aws", "ec2", verb, *(["instance-stopped"] if verb == "wait" else []),
                                   "--region", region, "--instance-ids", instance)))
    found.append(Fix(f"where it cannot move now: reschedule event {event.get('EventId', '?')} to a date of your "
                     f"choosing before {event.get('NotAfter', 'its deadline')} "
                     "(aws ec2 modify-instance-event-start-time)"))
    return found


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
        return Verdict(Status.WARNING, f"EC2 scheduled maintenance: {said}", data=data,
                       fixes=maintenance_fixes(probes, pending[0]))
    return Verdict(Status.OK, "no EC2 maintenance scheduled for this instance", data=data)


CHECKS = [
    Check("ec2-maintenance", "platform", "no EC2 scheduled maintenance (retirement, reboot, stop) pending for this "
          "instance (IMDSv2, within 1 s, fail-open)", check_maintenance, timeout=4),
]
