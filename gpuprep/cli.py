"""The command line: parse, build a Host, call one command, render the result.

Heavy modules (docker, pynvml, rich, distro) are imported inside the commands, so ``gpuprep --help``
stays about as fast as importing typer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from typer.core import TyperGroup

from gpuprep import errors
from gpuprep.cli_options import ONLY, SKIP, complete_runtime, install_step_list, seal_step_list
from gpuprep.errors import BadInput, GpuprepError, PreconditionUnmet, UsageError
from gpuprep.interrupts import Interrupted
from gpuprep.knowledge.command import app as knowledge_app
from gpuprep.options import DEFAULT_IMAGE, absolute, check_values, file_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpuprep.cli_options import StepList
    from gpuprep.host import Host
    from gpuprep.options import InstallOptions, SealOptions
    from gpuprep.runner.steps import Confirm, Context

# click rewraps help paragraphs; a paragraph that starts with \b keeps its lines (the examples' columns).
EPILOG = """\b
Examples:
  sudo gpuprep install && sudo gpuprep seal     build an ECS GPU image on this instance (user data)
  sudo gpuprep install --dry-run                what install would change, changing nothing
  sudo gpuprep --root /mnt/image install        act on a mounted image (Packer's amazon-chroot)
  sudo gpuprep doctor                           what is wrong with this GPU host, and each fix
  gpuprep --json doctor --no-container          the same as one JSON object, no container run

\b
Exit codes:
  install, seal  0 done (changed or not), 1 a step failed, 2 bad usage or input (nothing changed),
                 3 a precondition is unmet (not root, unsupported platform)
  doctor         Nagios: 0 ok, 1 warning, 2 critical, 3 unknown; doctor --boot: 1 when critical"""

class _Wrapped(TyperGroup):
    """Every command, knowledge's included, run inside the one wrapper: an error that ends it is said and mapped to
    its exit code by ``_fail``, whether gpuprep runs as the console script or under typer's CliRunner."""

    def invoke(self, ctx: Any) -> Any:
        passed: tuple[type[BaseException], ...] = (*_click_errors(), typer.Exit)  # usage errors: _usage_error's
        try:
            return super().invoke(ctx)
        except passed:
            raise
        except (Exception, Interrupted) as exc:
            raise typer.Exit(_fail(exc)) from None


app = typer.Typer(
    cls=_Wrapped,
    name="gpuprep",
    help="Turn a GPU instance into a sealed, self-testing ECS / AWS Batch container host, "
    "and diagnose GPU hosts.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: rich markup pulls in rich.markdown and markdown_it, about 45 ms of every --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

log = logging.getLogger("gpuprep")

# node_exporter's textfile directory on Debian (prometheus-node-exporter's --collector.textfile.directory).
PROM_DIR = "/var/lib/prometheus/node-exporter"


class Globals:
    root: str = "/"
    json: bool = False
    verbose: bool = False
    lock_wait: float = 120.0
    command: str = ""  # the command running: the JSON of an error that ends it early; main()'s exit-code guard
    interrupted_at_prompt: bool = False  # seal's question met Ctrl-C: exit 130, nothing changed


G = Globals()


def _version(value: bool) -> None:
    if value:
        import gpuprep

        typer.echo(f"gpuprep {gpuprep.__version__}")
        raise typer.Exit(0)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gpuprep: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


@app.callback()
def main_callback(
    ctx: typer.Context,
    root: str = typer.Option(
        "/", "--root", metavar="DIR",
        help="Act on the system mounted at DIR (an image or chroot) instead of this one.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout; logs go to stderr."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log every command run; show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    lock_wait: float = typer.Option(120.0, "--lock-wait", metavar="SECONDS", min=0,
                                    help="How long install or seal waits for another gpuprep run on the same "
                                    "system to finish (default 120)."),
) -> None:
    G.root, G.json, G.verbose, G.lock_wait = root, json_out, verbose, lock_wait
    ctx.obj = Shell


class Shell:
    """The command line's helpers for a command defined in its own module (knowledge/command.py), handed over as
    click's ``ctx.obj`` so that module need not import this one back."""

    G = G
    merge_globals = staticmethod(lambda *a: _merge_globals(*a))
    host = staticmethod(lambda: _host())


def _merge_globals(json_out: bool, verbose: bool, command: str) -> None:
    G.command = command
    G.json = G.json or json_out
    G.verbose = G.verbose or verbose
    _setup_logging(G.verbose)


def _fail(exc: BaseException) -> int:
    """The one place an error that ends a command is said and given its exit code (pip's ``_run_wrapper``): the
    code from ``errors.EXIT_MAPS``; ``gpuprep: error:`` and ``gpuprep: hint:`` lines on stderr, which user data
    greps for; under --json the same, with its ``reference``, as the one JSON object on stdout, so a fleet's
    collector always has one to parse; the traceback only with -v."""
    code = errors.exit_code_for(G.command, exc)
    if G.verbose and not isinstance(exc, (UsageError, Interrupted)):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    err = errors.diagnosis(exc)
    hint = "" if err.reference == "internal-error" and G.verbose else err.hint
    typer.echo(f"gpuprep: error: {err.message}", err=True)
    if hint:
        typer.echo(f"gpuprep: hint: {hint}", err=True)
    if G.json:
        from gpuprep.report import error_json

        typer.echo(error_json(G.command, err.message, hint, code, reference=err.reference))
    return code


def _host() -> Host:
    from gpuprep.host import Host

    root = G.root
    if not root:
        # An unset variable (`--root "$MOUNT"`) must not mean "here": run from / that is this machine.
        raise BadInput("--root is empty", "give the directory the image is mounted at (or leave --root out for "
                       "this system)")
    if not os.path.isdir(root):
        raise BadInput(f"--root {root}: not a directory", "give the directory the image is mounted at")
    from gpuprep import knowledge

    host = Host(root)
    knowledge.use(host)  # the target's /etc/gpuprep/knowledge.d, read when a fact is first asked
    return host


# Where install and seal write (each file through rootfs.write_atomic): a run killed mid-write leaves
# its .NAME.XXXXXXXX.tmp there, and the next run under the lock removes it, whatever it writes.
WRITTEN_DIRS = ("/etc/docker", "/etc/ecs", "/etc/gpuprep", "/etc/systemd/system", "/etc/yum.repos.d",
                "/etc/dnf/plugins", "/etc/yum/pluginconf.d", "/var/lib/ecs")


def _run_command(command: str, steps_fn: StepList, options: InstallOptions | SealOptions,
                 confirm_for: Callable[[Context], Confirm | None] | None = None) -> None:
    from gpuprep.interrupts import caught
    from gpuprep.platform import detect
    from gpuprep.report import render_run_summary, render_step_line, to_json
    from gpuprep.runner.steps import Context, check_selection, run_steps

    host = None
    try:
        steps = steps_fn()
        check_selection(options.only, options.skip, steps)  # bad usage says so before anything is printed
        host = _host()
        with contextlib.ExitStack() as held:
            # From here SIGTERM, SIGINT and SIGHUP end the run through run_steps, which undoes what it left half done.
            held.enter_context(caught())
            if not options.dry_run:
                if not host.is_root:
                    # Said before the lock, which lives in root's /run/lock: a user who is not root would
                    # meet "Permission denied" there (exit 1) instead of the precondition (exit 3).
                    raise PreconditionUnmet(f"{command} must run as root",
                                            f"run it with sudo (sudo gpuprep {command}), or as root in user-data")
                # One run at a time per target, for the whole run: plans see the last run's result. A
                # dry run changes nothing and waits for nobody.
                held.enter_context(host.lock(command, wait_s=G.lock_wait))
                host.sweep_litter(WRITTEN_DIRS)
            platform = detect(host)
            ctx = Context(host, platform, options, interactive=sys.stdin.isatty() and sys.stdout.isatty(),
                          can_ask=sys.stdin.isatty())
            if not G.json:
                typer.echo(f"gpuprep {command} on {platform.name}"
                           + (f" (root {host.root})" if not host.live else "")
                           + (" (dry run: nothing changes)" if options.dry_run else ""))
            report = run_steps(ctx, command, steps, only=options.only, skip=options.skip,
                               on_step=None if G.json else render_step_line,
                               confirm=confirm_for(ctx) if confirm_for is not None else None)
    finally:
        if host is not None:
            host.close()
    if G.json:
        typer.echo(to_json(report))
    else:
        render_run_summary(report)
    G.interrupted_at_prompt = report.exit_code == errors.TYPER_INTERRUPTED  # seal: EXIT_INTERRUPTED, 130
    if report.exit_code:
        if report.exc is not None and G.verbose:  # the three-argument form: Python 3.9's only one
            traceback.print_exception(type(report.exc), report.exc, report.exc.__traceback__, file=sys.stderr)
        typer.echo(f"gpuprep: error: {report.error}", err=True)
        if report.hint:
            typer.echo(f"gpuprep: hint: {report.hint}", err=True)
    raise typer.Exit(report.exit_code)


def _list(key: str, rows: list[dict[str, Any]], width: int = 16) -> None:
    """--list-steps / --list-checks: a line per row (its id, then its title), or under --json one object."""
    if G.json:
        import json

        typer.echo(json.dumps({"command": G.command, key: rows}, indent=2 if sys.stdout.isatty() else None))
    else:
        for row in rows:
            ident = f"{row['group']}/{row['id']}" if "group" in row else row["id"]
            typer.echo(f"{ident:<{width}} {row['title']}" + (" [boot]" if row.get("boot") else ""))
    raise typer.Exit(0)


JSON = typer.Option(False, "--json", help="Same as the global --json.")
VERBOSE = typer.Option(False, "-v", "--verbose", help="Same as the global -v.")


@app.command(
    short_help="Install ecs-init, Docker and the NVIDIA runtime in versions that agree; make nvidia the default "
    "runtime; prove a container sees the GPUs.",
    epilog="""\b
Examples:
  sudo gpuprep install                          every step; a second run changes nothing
  sudo gpuprep install --dry-run                the diffs, package pins and commands, changing nothing
  sudo gpuprep install --only docker-runtime,docker-reload    just daemon.json and the reload
  sudo gpuprep install --repo-file nvidia.repo --image IMAGE  builders without internet access
  gpuprep install --list-steps                  what each step does

\b
Exit codes: 0 done (changed or not), 1 a step failed, 2 bad usage or input (nothing changed),
3 a precondition is unmet (not root, unsupported platform).""")
def install(
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print what would change (diffs, packages, commands); change nothing."),
    only: List[str] = ONLY(install_step_list),
    skip: List[str] = SKIP(install_step_list),
    list_steps: bool = typer.Option(False, "--list-steps", help="List the steps and exit."),
    runtime: str = typer.Option("auto", "--runtime", metavar="auto|legacy|toolkit", autocompletion=complete_runtime,
                                help="NVIDIA stack: toolkit (nvidia-container-toolkit), legacy (nvidia-docker2 + "
                                "nvidia-container-runtime), auto (toolkit when offered)."),
    docker: Optional[str] = typer.Option(None, "--docker", metavar="VERSION", help="Force this Docker version."),
    repo_file: Optional[Path] = typer.Option(None, "--repo-file", metavar="PATH",
                                             help="Use this .repo file for NVIDIA's packages (air-gapped builds)."),
    no_versionlock: bool = typer.Option(False, "--no-versionlock", help="Do not versionlock the installed packages."),
    no_default_runtime: bool = typer.Option(False, "--no-default-runtime",
                                            help="Register the nvidia runtime; leave Docker's default runtime alone."),
    user: Optional[str] = typer.Option(None, "--user", metavar="NAME",
                                       help="Add NAME to group docker. Group docker is root-equivalent: "
                                       "anyone in it can mount / into a container. No user is added by default."),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Image gpu-check runs nvidia-smi in."),
    runtime_path: Optional[str] = typer.Option(None, "--runtime-path", metavar="PATH",
                                               help="The nvidia runtime binary to register (default: the one the "
                                               "installed stack provides, /usr/bin/nvidia-container-runtime)."),
    no_gate: bool = typer.Option(False, "--no-gate",
                                 help="The boot check reports but does not keep ecs.service from starting."),
    ecs_config: Optional[str] = typer.Option(None, "--ecs-config", metavar="PATH",
                                             help="ECS agent config file (default /etc/ecs/ecs.config)."),
    allow_vulnerable: bool = typer.Option(False, "--allow-vulnerable",
                                          help="Allow an NVIDIA container toolkit below the security floor (a "
                                          "version with a published CVE) when nothing newer agrees."),
    docker_cdi: bool = typer.Option(False, "--docker-cdi",
                                    help="Turn on Docker's own CDI (features.cdi in daemon.json, for Engines where it "
                                    "is off by default), so `--device nvidia.com/gpu=all` works."),
    prom_dir: Optional[str] = typer.Option(None, "--prom-dir", metavar="DIR",
                                           help="Install gpuprep-doctor.timer: doctor writes DIR/gpuprep.prom every "
                                           f"5 minutes for node_exporter's textfile collector (Debian: {PROM_DIR})."),
    json_out: bool = JSON,
    verbose: bool = VERBOSE,
) -> None:
    """Install ecs-init, Docker and the NVIDIA runtime in versions that agree; make nvidia the default runtime."""
    from gpuprep.install import install_steps
    from gpuprep.options import RUNTIME_STACKS, InstallOptions

    _merge_globals(json_out, verbose, "install")
    if list_steps:
        _list("steps", [{"id": s.id, "title": s.title} for s in install_steps()])
    if runtime not in RUNTIME_STACKS:
        raise BadInput(f"--runtime {runtime}: not one of {', '.join(RUNTIME_STACKS)}",
                       "use --runtime auto, legacy or toolkit")
    absolute("--ecs-config", ecs_config)
    absolute("--runtime-path", runtime_path)
    absolute("--prom-dir", prom_dir)
    file_path("--ecs-config", ecs_config)
    file_path("--runtime-path", runtime_path)
    check_values(docker=docker, user=user, images=[image], repo_file=repo_file)
    options = InstallOptions(
        dry_run=dry_run, only=only, skip=skip, runtime=runtime, docker_version=docker,
        repo_file=str(repo_file) if repo_file else None, versionlock=not no_versionlock,
        default_runtime=not no_default_runtime, user=user, image=image, gate=not no_gate,
        ecs_config=ecs_config, runtime_path=runtime_path, allow_vulnerable=allow_vulnerable,
        docker_cdi=docker_cdi, prom_dir=prom_dir,
    )
    _run_command("install", install_steps, options)


@app.command(
    short_help="Stop ECS; remove containers, images and the agent's state, so instances from the image register "
    "fresh.",
    epilog="""\b
Examples:
  sudo gpuprep seal --dry-run                   every file, container and image it would remove
  sudo gpuprep seal --yes --keep-image IMAGE    keep the image the boot gate's container check uses
  sudo gpuprep seal --deep                      also cloud-init state, SSH host keys, logs, caches

\b
Exit codes: 0 done, 1 a step failed, 2 bad usage or input (nothing changed), 3 a precondition is unmet.""")
def seal(
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="List exactly what a real run removes; remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before deleting (asked when stdin is a terminal)."),
    keep_image: List[str] = typer.Option([], "--keep-image", metavar="REF",
                                         help="Keep this image in the sealed image (repeatable)."),
    deep: bool = typer.Option(False, "--deep", help="Also remove cloud-init state, SSH host keys, authorized_keys, "
                              "machine-id, logs, DHCP leases and package caches, as Amazon's ECS AMI build does."),
    keep_cdi: bool = typer.Option(False, "--keep-cdi", help="Keep CDI specs in /etc/cdi that name this machine's "
                                  "GPUs (by default they go: every instance from the image has other GPUs)."),
    only: List[str] = ONLY(seal_step_list),
    skip: List[str] = SKIP(seal_step_list),
    list_steps: bool = typer.Option(False, "--list-steps", help="List the steps and exit."),
    json_out: bool = JSON,
    verbose: bool = VERBOSE,
) -> None:
    """Stop ECS; remove containers, images and the agent's state, so instances from the image register fresh."""
    from gpuprep.options import SealOptions
    from gpuprep.seal import confirm_for, seal_steps

    _merge_globals(json_out, verbose, "seal")
    if list_steps:
        _list("steps", [{"id": s.id, "title": s.title} for s in seal_steps()])
    check_values(images=keep_image, image_flag="--keep-image")
    options = SealOptions(dry_run=dry_run, yes=yes, keep_images=keep_image, deep=deep, only=only, skip=skip,
                          keep_cdi=keep_cdi)
    _run_command("seal", seal_steps, options, confirm_for)


@app.command(
    short_help="Check this GPU host: a verdict per check and the fix for each problem (Nagios exit codes).",
    epilog="""\b
Examples:
  sudo gpuprep doctor                           the verdict, then each problem and its fix
  sudo gpuprep -v doctor                        every check on its own line
  gpuprep --json doctor --no-container          one JSON object; no container is run
  sudo gpuprep doctor --prom /var/lib/prometheus/node-exporter/gpuprep.prom

\b
Exit codes (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown; the worst check wins.
With --boot (the boot gate): 1 when a check is critical, else 0.""")
def doctor(
    no_container: bool = typer.Option(False, "--no-container",
                                      help="Skip the container check (no image pull, no container)."),
    boot: bool = typer.Option(False, "--boot", help="The boot-time set of checks; exit non-zero only on critical."),
    prom: Optional[Path] = typer.Option(None, "--prom", metavar="FILE",
                                        help="Also write a Prometheus textfile (node_exporter textfile collector)."),
    list_checks: bool = typer.Option(False, "--list-checks", help="List the checks and exit."),
    image: Optional[str] = typer.Option(
        None, "--image", help="Image the container check runs nvidia-smi in (default: the image seal kept, else the "
        f"boot unit's --image, else {DEFAULT_IMAGE})."),
    mark_unhealthy: bool = typer.Option(
        False, "--mark-unhealthy",
        help="With --boot: when the gate fails, mark this instance Unhealthy in its Auto Scaling group "
             "(SetInstanceHealth, credentials from the instance profile) so the group replaces it."),
    json_out: bool = JSON,
    verbose: bool = VERBOSE,
) -> None:
    """Check this GPU host, a verdict per check and the fix for each problem. Exit code: Nagios."""
    from gpuprep.engine import cuda_container
    from gpuprep.engine.cuda_container import EarlyProof
    from gpuprep.gpu import cuda
    from gpuprep.interrupts import caught
    from gpuprep.options import DoctorOptions
    from gpuprep.platform import detect
    from gpuprep.report import Status, render_doctor_text, to_json, write_prometheus

    _merge_globals(json_out, verbose, "doctor")
    if list_checks:
        from gpuprep.doctor import all_checks
        checks = all_checks()
        width = max(len(f"{c.group}/{c.id}") for c in checks)  # one aligned column, whatever the longest id
        _list("checks", [{"id": c.id, "group": c.group, "title": c.title, "boot": c.boot} for c in checks], width)
    if mark_unhealthy and not boot:
        raise BadInput("--mark-unhealthy acts when the boot gate fails: it needs --boot", "add it to the boot "
                       "unit: GPUPREP_BOOT_ARGS=--mark-unhealthy in /etc/gpuprep/boot-check.env")
    check_values(images=[image] if image is not None else [])
    options = DoctorOptions(no_container=no_container, boot=boot, prom=str(prom) if prom else None, image=image)
    host = _host()
    early: list[cuda.PendingProof | EarlyProof | None] = []
    try:
        # A signal ends doctor through here too, so what began early is never left running (Interrupted: exit 3).
        with caught():
            # The CUDA proofs first, the host's child and the container: their cuInit and JIT overlap the checks'
            # imports (gpu/cuda.py and engine/cuda_container.py, start_early).
            early.append(None if boot else cuda.start_early(host))
            early.append(None if no_container else cuda_container.start_early(host, image))
            from gpuprep.doctor import run_checks
            report = run_checks(host, detect(host), options)
    finally:
        for pending in early:
            if pending is not None:
                pending.discard()
        host.close()
    if prom is not None:
        try:
            write_prometheus(report, str(prom))
        except FileNotFoundError:
            raise BadInput(f"--prom {prom}: its directory {prom.parent} does not exist",
                           f"point --prom into node_exporter's textfile directory (Debian: {PROM_DIR}), or "
                           f"create it: sudo mkdir -p {prom.parent}") from None
        except OSError as exc:  # only the textfile's own write: any other OSError is not "cannot write FILE"
            raise GpuprepError(f"cannot write {prom}: {exc.strerror}", "check the directory exists and is writable",
                               reference="prom-unwritable") from None
        except GpuprepError as exc:  # a directory or FIFO where the textfile goes
            raise BadInput(f"--prom {prom}: {exc.message}", "give --prom the path of a .prom file, inside "
                           "node_exporter's textfile directory") from None
    if G.json:
        typer.echo(to_json(report))
    else:
        render_doctor_text(report, verbose=G.verbose)
    code = report.exit_code
    if boot:
        # The boot gate fails only on critical: a warning must not keep a host out of the cluster. It fails
        # with 1, not Nagios' 2: systemd shows exit 2 as status=2/INVALIDARGUMENT, which reads as bad usage.
        code = 1 if report.status is Status.CRITICAL else 0
        if code and mark_unhealthy and host is not None:  # opt-in only (docs/contract.md)
            from gpuprep.ec2.autoscaling import mark_unhealthy as set_unhealthy

            typer.echo(f"gpuprep: boot gate failed: {set_unhealthy(host).message}", err=True)
    raise typer.Exit(code)


app.add_typer(knowledge_app)


def _click_errors() -> tuple[type[BaseException], ...]:
    """click's ClickException and Abort. typer 0.28 carries its own copy of click and older ones re-export
    click's, so both are found from what typer exports rather than by a module path."""
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return click_exception, typer.Abort


def _usage_error(exc: BaseException) -> int:
    """Report a usage error (a misspelt option, a value out of range) the way gpuprep reports any error."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # plain `gpuprep`: the help is the answer
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    # The parse failed before any callback ran: --json is known only from the arguments themselves.
    G.json = G.json or "--json" in sys.argv[1:]
    if not hasattr(exc, "format_message"):  # Abort: Ctrl-C at a prompt or end of input
        return _fail(GpuprepError("aborted", "run the command again to finish", reference="aborted"))
    ctx = getattr(exc, "ctx", None)
    # click raises "Option '--prom' requires an argument" with no context: the command is then found in
    # the arguments (the exit-code sweep, tests/reliability/test_exit_codes.py, met doctor exiting 2 there).
    path = ctx.command_path if ctx is not None else " ".join(["gpuprep", *_command_in(sys.argv[1:])])
    # `gpuprep knowledge validate`: knowledge; `python -m gpuprep doctor`: doctor (click names that program in 3 words).
    below = path[len(ctx.find_root().command_path if ctx is not None else "gpuprep"):].split()
    G.command = below[0] if below else ""
    return _fail(UsageError(exc.format_message(), f"`{path} --help` lists its commands and options",
                            exit_code=int(getattr(exc, "exit_code", errors.EXIT_BAD_INPUT))))


def _command_in(args: list[str]) -> list[str]:
    """The command named in ``args`` (a one-item list), past the global options and their values."""
    valued = {"--root", "--lock-wait"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in valued:
            i += 2
            continue
        if not arg.startswith("-"):
            return [arg] if arg in ("install", "seal", "doctor", "knowledge") else []
        i += 1
    return []


def documented_exit(code: int) -> int:
    """errors.documented_exit_code for this run's command."""
    return errors.documented_exit_code(code, G.command, G.interrupted_at_prompt)


def _run_wrapper(run: Callable[[], object]) -> int:
    """Run the command; whatever error ends it becomes its message and exit code in ``_fail``, so a command only
    raises (pip's ``cli/base_command.py`` ``_run_wrapper``)."""
    try:
        code = run() or 0
    except _click_errors() as exc:
        return _usage_error(exc)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # sys.exit("message"): print it, as the interpreter would
        return 1
    except (Exception, Interrupted) as exc:  # Interrupted: a signal before or after the steps, nothing half done
        return _fail(exc)
    if code == errors.TYPER_INTERRUPTED and not G.interrupted_at_prompt:
        # Ctrl-C, or a fleet agent's SIGINT, that typer turned into 130: a run that did not finish, said in one
        # line. The interrupted write left only its temp file, which the next run sweeps.
        return _fail(Interrupted(signal.SIGINT))
    return int(code) if isinstance(code, int) else 1


def main() -> None:
    """The console script: run the command, flush what it wrote, and leave without the interpreter's teardown.

    Finalising an interpreter that holds docker-py, requests and typer takes about 25 ms (against 3 ms for a
    bare one), on every command: the boot check's, seal's in user-data, doctor's. Nothing of gpuprep needs
    it: each file it writes is renamed into place and closed before the command returns, and the threads
    it starts are done or are daemon threads (a check past its timeout). So output and logs are flushed
    here and the process ends with the command's exit code.
    """
    from gpuprep.stdio import make_tolerant

    make_tolerant()  # a lost stdout or stderr never stops a run nor changes its exit code (gpuprep/stdio.py)
    logging.raiseExceptions = False  # a log line that cannot be written is dropped, never a "Logging error" dump
    # Not standalone: click's own "Usage: ... Error:" block would be the one error that does not look
    # like gpuprep's (one error line, one hint line), and user data greps for those.
    code = documented_exit(_run_wrapper(lambda: app(standalone_mode=False)))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # tolerant streams drop what they cannot write
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
