"""install's step doctor-timer: doctor's verdict for Prometheus, every 5 minutes (only with ``--prom-dir DIR``).

It installs ``gpuprep-doctor.service`` and ``gpuprep-doctor.timer`` (package data, ``systemd/`` links to
them, as for the boot check) and enables the timer; on a running systemd it also starts it, so the first
file is written now, not at the next boot. The service runs ``gpuprep doctor --no-container --prom
DIR/gpuprep.prom``; node_exporter's textfile collector reads DIR (Debian's default
``/var/lib/prometheus/node-exporter``, ``--collector.textfile.directory``). The shape is Debian's
``prometheus-node-exporter-smartmon.service/.timer`` (package prometheus-node-exporter-collectors).

Off by default: a host without node_exporter gains nothing from it. DIR must exist: gpuprep does not create
it, as ``doctor --prom`` does not, because a misspelt directory would be written and never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpuprep.bootcheck import DEFAULT_PROGRAM, resolve_program, systemd_running
from gpuprep.errors import StepFailed
from gpuprep.runner.needs import Option, Systemd
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, file_diff
from gpuprep.services import Services

SERVICE_NAME = "gpuprep-doctor.service"
TIMER_NAME = "gpuprep-doctor.timer"
SERVICE_PATH = f"/etc/systemd/system/{SERVICE_NAME}"
TIMER_PATH = f"/etc/systemd/system/{TIMER_NAME}"
DATA = Path(__file__).parent / "data"
PROM_FILE = "gpuprep.prom"
# The doctor line as shipped: the step replaces the program and the textfile's directory.
SHIPPED_EXEC = f"ExecStart={DEFAULT_PROGRAM} doctor --no-container --prom /var/lib/prometheus/node-exporter/{PROM_FILE}"
SHIPPED_RW = "ReadWritePaths=/var/lib/prometheus/node-exporter"
# What `systemctl enable` makes of the timer's [Install] section; read directly, so --root works the same.
TIMER_LINK = f"/etc/systemd/system/timers.target.wants/{TIMER_NAME}"


def render_service(program: str, prom_dir: str) -> str:
    """The service gpuprep wants: the shipped file with this gpuprep's path and DIR/gpuprep.prom."""
    prom = f"{prom_dir.rstrip('/')}/{PROM_FILE}"
    if any(c.isspace() for c in prom):
        prom = f'"{prom}"'  # systemd splits ExecStart= on whitespace unless the word is quoted
    directory = prom_dir.rstrip("/") or "/"
    if any(c.isspace() for c in directory):
        directory = f'"{directory}"'
    text = (DATA / SERVICE_NAME).read_text()
    text = text.replace(SHIPPED_RW, f"ReadWritePaths={directory}", 1)  # ProtectSystem=strict: its one writable place
    return text.replace(SHIPPED_EXEC, f"ExecStart={program} doctor --no-container --prom {prom}", 1)


def render_timer() -> str:
    return (DATA / TIMER_NAME).read_text()


@dataclass(frozen=True)
class TimerPlan:
    files: dict[str, tuple[str | None, str]]  # path -> (current, wanted)
    enable: bool  # the timer is not enabled
    start: bool  # a running systemd whose timer is not active

    @property
    def rewrite(self) -> list[str]:
        return [p for p, (current, want) in self.files.items() if current != want]


class DoctorTimerStep(Step[TimerPlan]):
    id = "doctor-timer"
    title = (f"with --prom-dir DIR: install and start {TIMER_NAME}, `gpuprep doctor` into DIR/{PROM_FILE} "
             "every 5 minutes for node_exporter")
    needs = (Option("prom_dir", "off (--prom-dir DIR, node_exporter's textfile directory, turns it on)"),
             Systemd("the doctor timer is a systemd timer"))

    def _want(self, ctx: Context) -> TimerPlan:
        prom_dir = ctx.install_options.prom_dir or ""  # set: its Option need skips the step without it
        host = ctx.host
        if not host.path(prom_dir).is_dir():
            where = "" if host.live else f" inside {host.root}"
            raise StepFailed(
                f"--prom-dir {prom_dir}: no such directory{where}; gpuprep does not create it (a misspelt "
                "directory would be written and never read)",
                f"give node_exporter's --collector.textfile.directory (Debian and Ubuntu: "
                f"/var/lib/prometheus/node-exporter, made by the prometheus-node-exporter package), or create "
                f"it: mkdir -p {prom_dir}")
        files = {SERVICE_PATH: (host.read_text(SERVICE_PATH), render_service(resolve_program(ctx), prom_dir)),
                 TIMER_PATH: (host.read_text(TIMER_PATH), render_timer())}
        enable = not host.lexists(TIMER_LINK)
        start = systemd_running(ctx) and not Services(host, ctx.platform).state(TIMER_NAME).running
        return TimerPlan(files, enable, start)

    def plan(self, ctx: Context) -> Change[TimerPlan] | Converged:
        want = self._want(ctx)
        data = {"service": SERVICE_PATH, "timer": TIMER_PATH}
        if not want.rewrite and not want.enable and not want.start:
            return Converged(f"{TIMER_NAME} enabled{' and active' if systemd_running(ctx) else ''}",
                             data=data)
        services = Services(ctx.host, ctx.platform)
        commands: list[list[str]] = []
        if want.rewrite and systemd_running(ctx):
            commands.append(["systemctl", "daemon-reload"])
        if want.enable or want.rewrite:
            commands.append(services.argv("enable", TIMER_NAME))
        if want.start:
            commands.append(services.argv("start", TIMER_NAME))
        diff = "".join(file_diff(p, *want.files[p]) for p in want.rewrite)
        verb = "write" if all(want.files[p][0] is None for p in want.files) else "update"
        summary = (f"{verb} {SERVICE_NAME} and {TIMER_NAME}" if want.rewrite else f"enable {TIMER_NAME}")
        if want.start:
            summary += ", start the timer"
        return Change(summary, diff=diff, commands=commands, data=data, payload=want)

    def apply(self, ctx: Context, change: Change[TimerPlan]) -> Applied:
        want = change.payload
        services = Services(ctx.host, ctx.platform)
        for path in want.rewrite:
            ctx.host.write_atomic(path, want.files[path][1], mode=0o644)
        if want.rewrite and systemd_running(ctx):
            services.daemon_reload()
        if want.enable or want.rewrite:
            services.enable(TIMER_NAME)
        if want.start:
            services.start(TIMER_NAME)
        return Applied()
