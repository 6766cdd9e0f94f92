"""Paths confined to a root directory: the semantics of ``openat2(RESOLVE_IN_ROOT)``, emulated.

With ``--root DIR`` every path gpuprep reads, writes, backs up or removes is a path *of the image*.
A symlink in the image means what it means once the image boots: an absolute link
(``/etc/os-release -> /usr/lib/os-release``, everywhere in images Packer's amazon-chroot builder
mounts) is taken relative to the root, never to this machine's ``/``. A relative link that climbs
above the root (``../../../tmp/x`` from ``/etc/docker``) cannot have been meant for the image: it is
refused (``LinkEscapes``, exit 2) and names the link. ``..`` in a path never goes above the root.

Resolving a path and then using it leaves a window in which a directory on the way could be swapped
for a link. So every change (write, rename, removal) walks the resolved directories again from a
descriptor of the root, one component at a time with ``O_NOFOLLOW``, and acts relative to the last
directory's descriptor (``dir_fd``): a swap makes the walk fail (``TreeChanged``), it cannot
redirect the change. Python 3.8 has no ``openat2`` binding (and Linux before 5.6 no syscall), hence
the emulation.

Writes are atomic: a temp file ``.NAME.XXXXXXXX.tmp`` beside the file, fsync, rename, fsync of the
directory. A kill between the temp file's creation and the rename leaves it behind, so each write
first removes the temp files of its own name that an earlier, killed run left.

This module imports nothing of gpuprep's domains; ``Host`` calls it with its root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from gpuprep.errors import EXIT_FAILED, BadInput, GpuprepError

# The kernel's own bound on links followed while resolving one path (MAXSYMLINKS, fs/namei.c).
MAX_LINKS = 40
# tempfile.mkstemp's alphabet and length, so leftovers of gpuprep before this module match too.
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What "keep whatever is there" looks like for ``expect``.
ANY = object()


class LinkEscapes(BadInput):
    """A relative symlink in the tree climbs above the root (exit 2, nothing changed)."""

    reference = "link-escapes-root"


class NotRegular(BadInput):
    """A path gpuprep reads or replaces is a FIFO, socket, device or directory (exit 2)."""

    reference = "not-a-regular-file"


class NotDurable(GpuprepError):
    """A file was renamed into place but its directory could not be flushed (EIO, ...): exit 1."""

    reference = "not-durable"
    exit_code = EXIT_FAILED


class TreeChanged(GpuprepError):
    """Something changed the tree under gpuprep between resolving a path and using it (exit 1)."""

    reference = "tree-changed"
    exit_code = EXIT_FAILED


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _join(root: str, parts: list[str]) -> str:
    return (root.rstrip("/") + "/" + "/".join(parts)) if parts else root


def resolve(root: str, path: str, *, follow: bool = True) -> str:
    """The path on this machine of ``path`` (absolute, a path of the tree at ``root``).

    Every link on the way is followed inside the root; with ``follow`` the last component's too.
    Components from the first missing one on are kept as written (``..`` among them still never
    leaves the root). ``root`` is absolute and has no link in it (``Host`` resolves it once).
    """
    if not path.startswith("/"):
        raise ValueError(f"paths of the tree are absolute: {path!r}")
    if root == "/":
        # The running system is its own root: the kernel's resolution is the image's. A link still
        # climbs no higher than / there, so nothing can escape.
        if follow:
            return os.path.realpath(path)
        head, tail = os.path.split(os.path.normpath(path))
        return os.path.join(os.path.realpath(head), tail) if tail else "/"
    done: list[str] = []
    # Each pending component carries the link it came from (None: from ``path`` itself).
    # An absolute link's own ".." clamp at the root, as "/.." is "/" (None: from ``path`` itself, same).
    pending: list[tuple[str, str | None]] = [(p, None) for p in reversed(_parts(path))]
    links = 0
    missing = False
    while pending:
        comp, via = pending.pop()
        if comp == "..":
            if done:
                done.pop()
            elif via is not None:
                raise LinkEscapes(f"{via} leads out of {root} (a relative link above the image's /)",
                                  f"make {via} a link inside the image (an absolute link is read inside "
                                  f"--root), or give gpuprep the directory it should use")
            continue
        if missing or (not pending and not follow):
            done.append(comp)
            continue
        real = _join(root, [*done, comp])
        try:
            st = os.lstat(real)
        except (FileNotFoundError, NotADirectoryError):
            missing = True
            done.append(comp)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(comp)
            if not stat.S_ISDIR(st.st_mode):
                missing = True  # what follows cannot exist below a file: the caller's open says ENOTDIR
            continue
        links += 1
        if links > MAX_LINKS:
            raise BadInput(f"{'/' + '/'.join(done + [comp])}: more than {MAX_LINKS} symlinks on the way in {root}",
                           "the image has a symlink loop there; fix the links")
        target = os.readlink(real)
        link = "/" + "/".join([*done, comp])
        if target.startswith("/"):
            done = []
        pending.extend((p, None if target.startswith("/") else link) for p in reversed(_parts(target)))
    return _join(root, done)


def relative(root: str, real: str) -> list[str]:
    """The components of ``real`` below ``root`` (both as ``resolve`` gives them)."""
    if root == "/":
        return _parts(real)
    if real == root:
        return []
    if not real.startswith(root.rstrip("/") + "/"):
        raise ValueError(f"{real} is not under {root}")
    return _parts(real[len(root):])


def open_dir(root: str, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of the directory ``root/parts...``, each component opened with ``O_NOFOLLOW``
    relative to the one before it; with ``create``, missing directories are made 0755.

    FileNotFoundError when one is missing (and not ``create``); TreeChanged when one is now a link.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, comp in enumerate(parts):
            try:
                nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                made = False
                with contextlib.suppress(FileExistsError):
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    made = True
                nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                if made:
                    # mkdir's mode passes through the umask: under umask 077 (hardened images, some SSM setups)
                    # /etc/gpuprep came out 0700 and seal.json unreadable to all but root. 0755, as the distro's.
                    os.fchmod(nxt, 0o755)
            except OSError as exc:
                st = _lstat_at(fd, comp) if exc.errno in (errno.ELOOP, errno.ENOTDIR) else None
                # A directory now, after the open met something else: it was swapped back and forth
                # meanwhile (TreeChanged below). Saying "not there" would let a removal report done.
                if st is not None and not stat.S_ISLNK(st.st_mode) and not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                             _join(root, parts[:i + 1])) from None
                if st is not None:
                    where = "/" + "/".join(parts[:i + 1])
                    raise TreeChanged(f"{where} in {root} is no longer a directory (a link or file took its place "
                                      f"while gpuprep worked); nothing was changed there",
                                      "something else is changing the tree: stop it, look at the tree, run again"
                                      ) from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def parent_dir(root: str, path: str, *, follow: bool = True, create: bool = False) -> Iterator[tuple[int, str]]:
    """(descriptor of the directory holding ``path``, the last component's name), closed on exit."""
    real = resolve(root, path, follow=follow)
    parts = relative(root, real)
    if not parts:
        raise BadInput(f"{path}: is the root of the tree itself", "give a path below the root")
    fd = open_dir(root, parts[:-1], create=create)
    try:
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_fd(fd: int, limit: int | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - size + 1))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise BadInput(f"larger than {limit} bytes", "")


def read_bytes(root: str, path: str, *, limit: int | None = None) -> bytes | None:
    """The content of ``path``, or None when it does not exist. A FIFO, socket or device is refused
    before anything blocks on it (``O_NONBLOCK``, then fstat): NotRegular."""
    real = resolve(root, path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if root == "/":
            fd = os.open(real, flags)
        else:
            parts = relative(root, real)
            dfd = open_dir(root, parts[:-1])
            try:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=dfd)
            finally:
                os.close(dfd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket: open(2) refuses it
            raise NotRegular(f"{path}: is a socket, expected a regular file",
                             f"remove {real} (a socket a crashed program left), then run again") from None
        if exc.errno == errno.ELOOP:
            raise TreeChanged(f"{path} in {root} became a symlink while gpuprep read it",
                              "something else is changing the tree: stop it, run again") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{path}: is {_kind(st.st_mode)}, expected a regular file",
                             f"replace {real} with the file it should be, or remove it")
        try:
            return _read_fd(fd, limit)
        except BadInput as exc:
            raise BadInput(f"{path}: {exc.message}", f"look at {real}: it is not the file gpuprep expects") from None
    finally:
        os.close(fd)


def _temp_names(name: str) -> re.Pattern[str]:
    # NAME's own temp files and those of its backups (NAME.gpuprep-<stamp>), whose write a kill can cut too.
    return re.compile(r"\." + re.escape(name) + r"(\.gpuprep-[0-9]{8}T[0-9]+Z)?\.[a-z0-9_]{8}\.tmp")


def clean_temps(dfd: int, name: str) -> list[str]:
    """Remove the temp files a killed write of ``name`` left in the directory ``dfd``; their names."""
    pattern = _temp_names(name)
    gone = []
    for entry in os.listdir(dfd):
        if pattern.fullmatch(entry):
            st = _lstat_at(dfd, entry)
            if st is not None and stat.S_ISREG(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=dfd)
                    gone.append(entry)
    return gone


_ANY_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def temp_files(root: str, directory: str) -> list[str]:
    """The host paths of files named like gpuprep's temp files (``.NAME.XXXXXXXX.tmp``) directly in
    ``directory`` of the tree: what a killed run left. Links and directories of that name are not
    gpuprep's and are not listed."""
    try:
        dfd = open_dir(root, relative(root, resolve(root, directory)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        found = []
        for entry in sorted(os.listdir(dfd)):
            if _ANY_TEMP.fullmatch(entry):
                st = _lstat_at(dfd, entry)
                if st is not None and stat.S_ISREG(st.st_mode):
                    found.append(directory.rstrip("/") + "/" + entry)
        return found
    finally:
        os.close(dfd)


def write_in(dfd: int, name: str, data: bytes, *, mode: int | None = None, owner: tuple[int, int] | None = None,
             expect: object = ANY, where: str = "") -> None:
    """Atomically make ``name`` in directory ``dfd`` hold ``data``.

    An existing file keeps its mode and owner (``mode`` and ``owner`` apply to a new file; mode
    default 0644). With ``expect`` (bytes, or None for "absent"), the file is read again right before
    the rename and the write is abandoned, nothing changed, when it no longer holds that.
    """
    where = where or name
    st = _lstat_at(dfd, name)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise NotRegular(f"{where}: is {_kind(st.st_mode)}, expected a file",
                         f"move {where} away; gpuprep writes a regular file there")
    clean_temps(dfd, name)
    while True:
        tmp = f".{name}.{''.join(secrets.choice(_TEMP_CHARS) for _ in range(8))}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dfd)
            break
        except FileExistsError:
            continue
    try:
        try:
            try:
                _fill(fd, data, st, mode, owner)
            except OSError as exc:
                raise _named(exc, where) from None
        finally:
            os.close(fd)
        if expect is not ANY:
            current = _read_at(dfd, name)
            if current != expect:
                raise TreeChanged(f"{where} changed while gpuprep was working on it; nothing was written",
                                  "another program edits that file: let it finish, then run gpuprep again")
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            raise _named(exc, where) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    try:
        os.fsync(dfd)
    except OSError as exc:
        # Renamed already: the file holds the new content, whole; only the directory's flush failed, so a
        # power cut now could bring back the old one. Name the file the user asked about, not its directory.
        raise NotDurable(
            f"{where}: written, but flushing its directory failed: {exc.strerror} "
            f"({errno.errorcode.get(exc.errno or 0, exc.errno)}); the new content may not survive a crash",
            "the disk reports errors: check `dmesg` and the volume, then run gpuprep again") from None


def _named(exc: OSError, where: str) -> OSError:
    """``exc`` with ``where`` as its file: an fd's write or fsync error names none by itself."""
    return exc if exc.filename else type(exc)(exc.errno, exc.strerror, where)


def _fill(fd: int, data: bytes, st: os.stat_result | None, mode: int | None, owner: tuple[int, int] | None) -> None:
    """Write ``data`` to the new temp file ``fd``, give it the mode and owner it should have, flush it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if st is not None:
        os.fchmod(fd, st.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):
            os.fchown(fd, st.st_uid, st.st_gid)
    else:
        os.fchmod(fd, 0o644 if mode is None else mode)
        if owner is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
    os.fsync(fd)


def _read_at(dfd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _read_fd(fd, None)
    finally:
        os.close(fd)


def write_atomic(root: str, path: str, data: bytes | str, *, mode: int | None = None, expect: object = ANY,
                 parents: bool = True) -> None:
    """Write ``path`` of the tree atomically (see ``write_in``); missing parents are made 0755 (with
    ``parents=False`` they raise FileNotFoundError). A link at ``path`` is followed inside the root and its
    target replaced, so the link stays."""
    if isinstance(data, str):
        data = data.encode()
    with parent_dir(root, path, create=parents) as (dfd, name):
        write_in(dfd, name, data, mode=mode, expect=expect, where=path)


def backup(root: str, path: str, suffix: str) -> str | None:
    """Copy ``path`` (a link's target) beside itself as ``NAME<suffix>``, mode and owner kept; the
    copy's host path, or None when there was no regular file to copy."""
    try:
        with parent_dir(root, path) as (dfd, name):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return None
                data = _read_fd(fd, None)
            finally:
                os.close(fd)
            # Created with the original's mode: a 0600 file's copy is never readable by others, not even briefly.
            write_in(dfd, name + suffix, data, mode=st.st_mode & 0o7777, owner=(st.st_uid, st.st_gid))
            real = resolve(root, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "/" + "/".join(relative(root, real)[:-1] + [name + suffix])


def _rmtree_at(dfd: int, name: str) -> None:
    """Remove the directory ``name`` in ``dfd`` and everything in it, never following a link."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
    try:
        with os.scandir(fd) as entries:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        for child, is_dir in children:
            if is_dir:
                _rmtree_at(fd, child)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def remove(root: str, path: str, *, base: str = "/", truncate: bool = False) -> bool:
    """Remove ``path`` (a file, a link as a link, or a directory tree), or empty it in place with
    ``truncate`` (a regular file only); False when there was nothing to do.

    Links are followed (inside the root) down to ``base`` and not below it: a directory between
    ``base`` and ``path`` that is a link now (swapped in since the caller found ``path``) stops the
    removal with TreeChanged instead of redirecting it.
    """
    base_real = resolve(root, base)
    tail = _parts(path[len(base.rstrip("/")):]) if path.startswith(base.rstrip("/") + "/") else None
    if tail is None or ".." in tail or not tail:
        raise ValueError(f"{path} is not below {base}")
    try:
        dfd = open_dir(root, [*relative(root, base_real), *tail[:-1]])
    except (FileNotFoundError, NotADirectoryError):
        return False
    name = tail[-1]
    try:
        st = _lstat_at(dfd, name)
        if st is None:
            return False
        if truncate:
            if not stat.S_ISREG(st.st_mode):
                return False
            # In place (one syscall, so atomic): a daemon holding a log open keeps its inode, and
            # /etc/machine-id must stay as an empty file (systemd fills it at first boot).
            fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
        elif stat.S_ISDIR(st.st_mode):
            _rmtree_at(dfd, name)
        else:
            os.unlink(name, dir_fd=dfd)
        return True
    finally:
        os.close(dfd)


def rename(root: str, path: str, new_name: str) -> None:
    """Rename ``path`` to ``new_name`` in the same directory (the link itself, when it is one)."""
    with parent_dir(root, path, follow=False) as (dfd, name):
        os.rename(name, new_name, src_dir_fd=dfd, dst_dir_fd=dfd)


def copy_out(src: Path, dest: str, add: Mapping[str, str] | None = None) -> None:
    """Copy the regular files of directory ``src`` (links not followed; none where it is absent) into ``dest``,
    replacing what is there, then write ``add`` (name -> text) there: a copy outside the root that a read-only query
    may open for writing (rpm's sqlite database), or read with a file the real run adds (a dry run's repository)."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for e in os.scandir(src) if src.is_dir() else ():
        if e.is_file(follow_symlinks=False):
            shutil.copyfile(e.path, f"{dest}/{e.name}", follow_symlinks=False)
    for name, text in (add or {}).items():
        Path(dest, name).write_text(text, encoding="utf-8")
