"""``gpuprep knowledge``: the tables in use (their origin and age), and ``validate FILE`` before a fleet ships one.
The commands use cli.py's helpers (globals, errors, the Host), imported when they run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gpuprep.errors import BadInput

if TYPE_CHECKING:
    from gpuprep.host import Host

app = typer.Typer(
    name="knowledge", no_args_is_help=False, invoke_without_command=True, rich_markup_mode=None,
    short_help="List the facts gpuprep acts on (security floors, XIDs, instance types), their origin and age.",
    help="The tables gpuprep acts on (security floors, XIDs, instance types, Docker's CDI): which are in use, where "
    "each came from, how old; validate a table before a fleet ships it to /etc/gpuprep/knowledge.d.",
    epilog="""\b
Examples:
  gpuprep knowledge                              each table in use, its origin and age
  gpuprep --root /mnt/image knowledge            the same for an image (its /etc/gpuprep/knowledge.d)
  gpuprep knowledge validate toolkit-security.json   check a table before dropping it in

\b
Exit codes: 0 listed / valid, 1 a file in knowledge.d was refused (listing), 2 the file is not a valid table.""")
JSON = typer.Option(False, "--json", help="Same as the global --json.")
VERBOSE = typer.Option(False, "-v", "--verbose", help="Same as the global -v.")


@app.callback()
def knowledge_list(ctx: typer.Context, json_out: bool = JSON, verbose: bool = VERBOSE) -> None:
    """List the knowledge tables in use: origin (shipped, or a file in /etc/gpuprep/knowledge.d), as_of, age."""
    cli = ctx.find_root().obj  # cli.Shell
    cli.merge_globals(json_out, verbose, "knowledge")
    if ctx.invoked_subcommand is not None:
        return
    out, errors, code = listing(cli.host(), as_json=cli.G.json)  # an error ends it in cli.main's one wrapper
    typer.echo(out)
    for line in errors:
        typer.echo(f"gpuprep: error: {line}", err=True)
    raise typer.Exit(code)


@app.command("validate")
def knowledge_validate(ctx: typer.Context,
                       path: Path = typer.Argument(..., metavar="FILE", help="The table file to check."),
                       json_out: bool = JSON, verbose: bool = VERBOSE) -> None:
    """Check FILE against gpuprep's knowledge schema (and its rules), changing nothing. Exit 0 valid, 2 not."""
    cli = ctx.find_root().obj  # cli.Shell
    cli.merge_globals(json_out, verbose, "knowledge")
    typer.echo(validation(path, as_json=cli.G.json))  # BadInput (exit 2) ends it in cli.main's one wrapper
    raise typer.Exit(0)


def listing(host: Host, *, as_json: bool) -> tuple[str, list[str], int]:
    """(stdout, error lines, exit code): 1 when a file in knowledge.d was refused, else 0."""
    from gpuprep import knowledge

    k = knowledge.load(host)
    today = knowledge.today()
    code = 1 if k.refused else 0
    if as_json:
        return json.dumps({"command": "knowledge", "status": "failed" if code else "ok",
                           "directory": knowledge.KNOWLEDGE_D,
                           "tables": [t.as_dict(today) for t in k.tables.values()],
                           "refused": [{"path": r.path, "reason": r.reason} for r in k.refused],
                           "passed_over": k.older}, indent=2), [], code
    lines = [f"{t.name:<18} as of {t.as_of} ({t.age_days(today)} days)  {len(t.rows):>3} rows  {t.origin}"
             for t in k.tables.values()]
    lines += [f"passed over: {line}" for line in k.older]
    return "\n".join(lines), [f"{r.line()}; the table in use is kept" for r in k.refused], code


def validation(path: Path, *, as_json: bool) -> str:
    """What ``validate`` prints for a valid table; BadInput (one line and its hint) for anything else."""
    from gpuprep import knowledge

    try:
        table = knowledge.parse(path.read_bytes(), str(path))
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}", "give the path of a JSON table file") from None
    except knowledge.KnowledgeInvalid as exc:
        raise BadInput(str(exc), f"compare it with the shipped table: {knowledge.DATA}/<table>.json; the schema is "
                       f"{knowledge.SCHEMA}") from None
    in_use = knowledge.shipped()[table.name]
    wins = table.as_of > in_use.as_of
    if as_json:
        return json.dumps({"command": "knowledge", "status": "ok", "valid": True, "table": table.name,
                           "as_of": table.as_of.isoformat(), "rows": len(table.rows), "newer_than_shipped": wins},
                          indent=2)
    return (f"{path}: a valid {table.name} table as of {table.as_of}, {len(table.rows)} rows; "
            + (f"newer than the shipped one ({in_use.as_of}): it would be used" if wins else
               f"not newer than the shipped one ({in_use.as_of}): it would be passed over"))
