"""Build real RPM packages and repositories for tests: rpmbuild + createrepo_c (docs/testbed.md 4).

    from rpmfixtures import PkgSpec, build_repo
    repo = build_repo([PkgSpec("docker", "20.10.25", "1.amzn2023", provides=["docker-engine"]),
                       PkgSpec("ecs-init", "1.97.1", "1", requires=["docker >= 20.10.0"])],
                      tmp_path / "repo", cache=cache_dir)

Packages are built in parallel (each rpmbuild is a separate process, ~40 ms) and cached by the
hash of their spec under ``cache`` (give a directory that outlives the test, e.g. pytest's
``cache.mkdir``), so a suite that builds the same fixture twice pays once. Real-world shapes the
fixtures imitate are kept in the tests that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Bumped when the spec template changes, so cached packages are rebuilt.
_TEMPLATE_VERSION = "1"


@dataclass
class PkgSpec:
    name: str
    version: str
    release: str
    epoch: int | None = None
    arch: str = "noarch"
    requires: list[str] = field(default_factory=list)  # one RPM dependency each: "docker >= 20.10.0"
    provides: list[str] = field(default_factory=list)
    obsoletes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    files: dict[str, str | bytes] = field(default_factory=dict)  # absolute path -> content
    config: list[str] = field(default_factory=list)  # paths of ``files`` marked %config
    config_noreplace: list[str] = field(default_factory=list)  # ... marked %config(noreplace)
    modes: dict[str, int] = field(default_factory=dict)  # path -> mode; default 0755 for "#!" files
    dirs: list[str] = field(default_factory=list)  # directories owned (%dir)
    pre: str = ""  # scriptlet bodies (sh)
    post: str = ""
    preun: str = ""
    postun: str = ""
    # Scriptlets in rpm's embedded Lua (``%pre -p <lua>``): they run without a shell in the target root, which
    # an empty installroot lacks (``posix.sleep(3)`` holds a transaction open, for lock tests).
    lua: bool = False
    summary: str = "gpuprep test fixture"

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    def digest(self) -> str:
        d = asdict(self)
        d["files"] = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in sorted(self.files.items())}
        d["_template"] = _TEMPLATE_VERSION
        if not d["lua"]:  # a field added later: specs without it keep their cached builds
            del d["lua"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:24]


def _mode(spec: PkgSpec, path: str, content: str | bytes) -> int:
    if path in spec.modes:
        return spec.modes[path]
    head = content[:2] if isinstance(content, bytes) else content[:2].encode()
    return 0o755 if head == b"#!" else 0o644


def _spec_text(spec: PkgSpec, stage: Path) -> str:
    lines = [
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Release: {spec.release}",
        f"Summary: {spec.summary}",
        "License: MIT",
        f"BuildArch: {spec.arch}",
    ]
    if spec.epoch is not None:
        lines.append(f"Epoch: {spec.epoch}")
    for tag, values in (("Requires", spec.requires), ("Provides", spec.provides),
                        ("Obsoletes", spec.obsoletes), ("Conflicts", spec.conflicts)):
        lines += [f"{tag}: {v}" for v in values]
    lines += ["", "%description", spec.summary, "", "%install", "mkdir -p %{buildroot}"]
    if spec.files or spec.dirs:
        lines.append(f"cp -a {stage}/. %{{buildroot}}/")
    for name in ("pre", "post", "preun", "postun"):
        body = getattr(spec, name)
        if body:
            lines += ["", f"%{name}" + (" -p <lua>" if spec.lua else ""), body.rstrip("\n")]
    lines += ["", "%files"]
    for d in spec.dirs:
        lines.append(f'%dir "{d}"')
    for path in spec.files:
        if path in spec.config_noreplace:
            lines.append(f'%config(noreplace) "{path}"')
        elif path in spec.config:
            lines.append(f'%config "{path}"')
        else:
            lines.append(f'"{path}"')
    return "\n".join(lines) + "\n"


def _stage(spec: PkgSpec, stage: Path) -> None:
    for d in spec.dirs:
        (stage / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, content in spec.files.items():
        target = stage / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        os.chmod(target, _mode(spec, path, content))


def _rpmbuild(spec: PkgSpec, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="rpmfixture-") as tmp:
        top = Path(tmp)
        stage = top / "stage"
        stage.mkdir()
        _stage(spec, stage)
        spec_file = top / f"{spec.name}.spec"
        spec_file.write_text(_spec_text(spec, stage))
        out = top / "RPMS"
        argv = [
            "rpmbuild", "-bb", "--nodeps", "--quiet",
            "--define", f"_topdir {top}",
            "--define", f"_rpmdir {out}",
            "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
            # No brp scripts, debuginfo or build-id links: faster, and fixtures need none of them.
            "--define", "__os_install_post %{nil}",
            "--define", "debug_package %{nil}",
            "--define", "_build_id_links none",
            # Scriptlets and files are the test's own; never let rpmbuild guess dependencies.
            "--define", "__find_requires %{nil}",
            "--define", "__find_provides %{nil}",
            "--define", "_use_internal_dependency_generator 0",
        ]
        if spec.arch != "noarch":
            argv += ["--target", spec.arch]
        argv.append(str(spec_file))
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        built = out / spec.filename
        if proc.returncode != 0 or not built.is_file():
            raise RuntimeError(f"rpmbuild {spec.nevra} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
                               f"\n--- spec ---\n{spec_file.read_text()}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_dest = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(built, tmp_dest)
        os.replace(tmp_dest, dest)
        return dest


def build_rpm(spec: PkgSpec, outdir: str | Path, cache: str | Path | None = None) -> Path:
    """Build ``spec`` into ``outdir``; with ``cache``, reuse an identical earlier build. Returns the .rpm."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / spec.filename
    if cache is None:
        return _rpmbuild(spec, target)
    cached = Path(cache) / spec.digest() / spec.filename
    if not cached.is_file():
        _rpmbuild(spec, cached)
    if target.exists():
        target.unlink()
    try:
        os.link(cached, target)
    except OSError:
        shutil.copyfile(cached, target)
    return target


@dataclass(frozen=True)
class AdvisorySpec:
    """A security advisory in the repository's updateinfo, shaped like Amazon Linux's ALAS records (its
    ``updateinfo.xml``: ``<update type="security">`` with id, severity, CVE references and the fixed packages)."""

    id: str
    severity: str  # Important, Critical, Medium, Low (dnf prints it as given)
    cves: tuple[str, ...]
    packages: tuple[PkgSpec, ...]  # the fixed packages; each must be in the repository

    def xml(self) -> str:
        refs = "".join(f'<reference href="https://alas.aws.amazon.com/cve/html/{c}.html" id="{c}" type="cve" '
                       f'title="{c}"/>' for c in self.cves)
        pkgs = "".join(f'<package name="{p.name}" version="{p.version}" release="{p.release}" epoch="{p.epoch or 0}" '
                       f'arch="{p.arch}"><filename>{p.filename}</filename></package>' for p in self.packages)
        return (f'<update from="alas@amazon.com" status="final" type="security" version="2.0"><id>{self.id}</id>'
                f"<title>{self.id}: {self.severity.lower()} priority package update</title>"
                '<issued date="2026-11-01 00:00:00"/><updated date="2026-11-01 00:00:00"/>'
                f"<severity>{self.severity}</severity><description>fixture advisory</description>"
                f"<references>{refs}</references><pkglist><collection short=\"fixture\"><name>fixture</name>"
                f"{pkgs}</collection></pkglist></update>")


def build_repo(specs: Iterable[PkgSpec], repodir: str | Path, cache: str | Path | None = None,
               jobs: int | None = None, advisories: Iterable[AdvisorySpec] = ()) -> Path:
    """Build every package into ``repodir`` (in parallel) and make it a repository with createrepo_c; with
    ``advisories``, add their updateinfo with modifyrepo_c, as Amazon Linux's repositories carry ALAS.

    A ``repodir`` already built from exactly these specs is returned as it is.
    """
    specs = list(specs)
    advisories = list(advisories)
    repodir = Path(repodir)
    stamp = repodir / ".rpmfixtures"
    digest = hashlib.sha256("".join([*sorted(s.digest() for s in specs), *(a.xml() for a in advisories)]).encode()
                            ).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest and (repodir / "repodata" / "repomd.xml").is_file():
        return repodir
    repodir.mkdir(parents=True, exist_ok=True)
    for old in repodir.glob("*.rpm"):
        old.unlink()
    with ThreadPoolExecutor(max_workers=jobs or max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda s: build_rpm(s, repodir, cache), specs))
    subprocess.run(["createrepo_c", "--quiet", "--no-database", str(repodir)], check=True,
                   capture_output=True, text=True)
    if advisories:
        updateinfo = repodir.parent / f".{repodir.name}-updateinfo.xml"
        updateinfo.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<updates>'
                              + "".join(a.xml() for a in advisories) + "</updates>\n")
        subprocess.run(["modifyrepo_c", "--mdtype=updateinfo", str(updateinfo), str(repodir / "repodata")],
                       check=True, capture_output=True, text=True)
        updateinfo.unlink()
    stamp.write_text(digest)
    return repodir


def dnf_conf(path: str | Path, repos: dict[str, str | Path] | None = None, *, reposdir: str | Path = "/dev/null",
             cachedir: str | Path | None = None) -> Path:
    """Write a dnf.conf of the test's own: no system repos, plugins off except what dnf flags enable.

    ``repos`` maps a repo id to a directory made by ``build_repo``.
    """
    path = Path(path)
    lines = ["[main]", f"reposdir={reposdir}", "gpgcheck=0", "install_weak_deps=0", "keepcache=0",
             "skip_if_unavailable=0", "metadata_expire=0"]
    if cachedir is not None:
        lines.append(f"cachedir={cachedir}")
    for repo_id, repo in (repos or {}).items():
        lines += ["", f"[{repo_id}]", f"name={repo_id}", f"baseurl=file://{Path(repo).resolve()}",
                  "gpgcheck=0", "enabled=1"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def al2023_root(root: Path, repo: str | Path) -> Path:
    """A --root tree of Amazon Linux 2023's os-release whose one repository (``fixture``) is ``repo``."""
    (root / "etc/yum.repos.d").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fixtures/distros/amzn-2023/etc/os-release", root / "etc/os-release")
    (root / "etc/yum.repos.d/fixture.repo").write_text(repo_file({"fixture": repo}))
    return root


def repo_file(repos: dict[str, str | Path]) -> str:
    """The text of a ``/etc/yum.repos.d/*.repo`` naming local repositories (for an installroot)."""
    parts = []
    for repo_id, repo in repos.items():
        parts.append(f"[{repo_id}]\nname={repo_id}\nbaseurl=file://{Path(repo).resolve()}\n"
                     "enabled=1\ngpgcheck=0\n")
    return "\n".join(parts)


def rpm_query_root(root: str | Path, names: Sequence[str]) -> dict[str, str | None]:
    """``rpm -q --root ROOT`` for each name: its NEVRA, or None when not installed."""
    result: dict[str, str | None] = {}
    for name in names:
        proc = subprocess.run(["rpm", "-q", "--root", str(root), "--qf", "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n",
                               name], capture_output=True, text=True, check=False)
        result[name] = proc.stdout.strip() if proc.returncode == 0 else None
    return result
