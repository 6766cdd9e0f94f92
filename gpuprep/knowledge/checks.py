"""doctor's checks of gpuprep's own knowledge: its age, and the files of /etc/gpuprep/knowledge.d it refused.

A tool trusted to refuse a vulnerable runtime must say when what it knows is old: a bulletin published after its
newest table is one it cannot know of.
"""

from __future__ import annotations

from gpuprep import fixes, knowledge
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

MAX_AGE_DAYS = 180


def _knowledge(probes: Probes, why: str, *args: str) -> list[fixes.Fix]:
    """``gpuprep [--root DIR] knowledge ARGS``: it reads the tables of the target."""
    fix = fixes.gpuprep(probes.host, probes.platform, why, "knowledge", *args)
    return [fix] if fix is not None else []


@probe
def knowledge_in_use(p: Probes) -> knowledge.Knowledge:
    return knowledge.of(p.host)


def check_age(probes: Probes) -> Verdict:
    k = knowledge_in_use(probes)
    today = knowledge.today()
    newest, oldest = k.newest(), k.oldest()
    age = newest.age_days(today)
    # Each table's age and origin; its sources are `gpuprep knowledge`'s to list (doctor's JSON must fit the 24,000
    # characters SSM Run Command keeps on an 8-GPU host, issue 26).
    tables = [{key: v for key, v in t.as_dict(today).items() if key != "sources"} for t in k.tables.values()]
    data = {"max_age_days": MAX_AGE_DAYS, "newest_as_of": newest.as_of.isoformat(), "age_days": age, "tables": tables}
    if age > MAX_AGE_DAYS:
        return Verdict(
            Status.WARNING,
            f"gpuprep's knowledge is {age} days old (newest table as of {newest.as_of}); the oldest is "
            f"{oldest.name}, as of {oldest.as_of} ({oldest.origin}): bulletins since then are unknown to it",
            data=data, fixes=[fixes.Fix(f"upgrade gpuprep, or drop newer tables into {knowledge.KNOWLEDGE_D}/ "
                                        "(root-owned, mode 0644), each checked first with gpuprep knowledge validate "
                                        "FILE"), *_knowledge(probes, "what is in use")])
    return Verdict(Status.OK, f"gpuprep's knowledge is {age} days old (newest table as of {newest.as_of}; oldest "
                   f"{oldest.name}, as of {oldest.as_of})", data=data)


def check_files(probes: Probes) -> Verdict:
    k = knowledge_in_use(probes)
    overrides = sorted(t.origin for t in k.tables.values() if t.origin != knowledge.SHIPPED)
    data = {"directory": knowledge.KNOWLEDGE_D, "in_use": overrides, "refused": [r.line() for r in k.refused],
            "older": k.older}
    if k.refused:
        first = k.refused[0]
        more = f" (and {len(k.refused) - 1} more)" if len(k.refused) > 1 else ""
        return Verdict(Status.WARNING, f"{first.line()}{more}; the tables in use are kept",
                       data=data, fixes=[fixes.edit_by_hand(str(first.path), "fix or remove it"),
                                         *_knowledge(probes, "then check it", "validate", str(first.path))])
    if not overrides and not k.older:
        raise NotApplicable(f"no table in {knowledge.KNOWLEDGE_D}")
    summary = f"in use from {knowledge.KNOWLEDGE_D}: {', '.join(overrides) or 'none'}"
    if k.older:
        summary += f"; {len(k.older)} not newer than the table in use, passed over"
    return Verdict(Status.OK, summary, data=data)


CHECKS = [
    Check("knowledge-files", "packages", f"every table in {knowledge.KNOWLEDGE_D} is root-owned, not writable by "
          "others, and valid", check_files),
    Check("knowledge-age", "packages", f"gpuprep's knowledge (security floors, XIDs, instance types) is at most "
          f"{MAX_AGE_DAYS} days old", check_age),
]
