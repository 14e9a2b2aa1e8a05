"""Path confinement and the landing folder's rules: what may be taken, when, and from where.

Flow parameters come from the Prefect UI, so a folder or file name there is untrusted input: it
must not reach outside the configured folder through `..`, an absolute path or a symlink. A
landing folder never holds the store or the system's files, and a file is taken only once its
uploader is done with it.
"""

from __future__ import annotations

import fnmatch
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from barkeeper.errors import ParameterError

SYSTEM_FOLDERS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
    "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/Users",
)  # fmt: skip
UNFINISHED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")


def confine(root: Path, relative: str | Path = ".", *, parameter: str = "path") -> Path:
    """Resolve `relative` under `root`, refusing anything that ends up outside `root`.

    Parameters
    ----------
    root
        The configured folder; it is resolved (symlinks followed) first.
    relative
        A path relative to `root` ("." for the root itself). Absolute paths and `..` that
        leave the root, directly or through a symlink, raise ParameterError.
    parameter
        Name of the parameter, for the error message.
    """
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ParameterError(
            f"{parameter}: {str(relative)!r} points outside {base}; use a path inside that folder"
        )
    return target


def inside(root: Path, path: Path) -> bool:
    """True if `path`, with every symlink followed, lies inside `root` (also resolved)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def landed_files(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """The files waiting in a landing folder: top-level entries matching a vendor pattern.

    Hidden files and uploads in progress (``.part``, ``.tmp``) never match, nor do sub-folders
    (`done/`, `rejected/`); anything else is left where it is. Symlinks are listed as they are,
    so the caller can reject the ones that lead outside the folder.
    """
    return sorted(
        p
        for p in Path(folder).iterdir()
        if not p.name.startswith(".")
        and not p.name.lower().endswith(UNFINISHED_SUFFIXES)
        and any(fnmatch.fnmatch(p.name.lower(), pattern.lower()) for pattern in patterns)
        and (p.is_symlink() or p.is_file())
    )


def unsettled_for(path: Path, settle_seconds: float, now: float | None = None) -> float:
    """Seconds `path` must still stay unchanged before it is taken (0: it may be taken now).

    A file still being written changes its size and modification time; one whose modification
    time is `settle_seconds` old has had both stable that long.
    """
    age = (time.time() if now is None else now) - path.lstat().st_mtime
    return max(0.0, settle_seconds - age)


def refuse_landing(folder: Path, database_url: str) -> None:
    """Raise ParameterError if `folder` is a system or home folder or holds the store's file."""
    resolved = Path(folder).resolve()
    homes = {Path.home().resolve(), *(p.resolve() for p in _children("/home"))}
    if str(resolved) in SYSTEM_FOLDERS or resolved in homes:
        raise ParameterError(
            f"landing: {resolved} is a system or home folder; point the landing folder at a "
            "folder of its own (nothing was moved)"
        )
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        store = Path(url.database).resolve()
        if store.is_relative_to(resolved):
            raise ParameterError(
                f"landing: {resolved} holds the store {store}; use a folder of its own for "
                "vendor files (nothing was moved)"
            )


def _children(folder: str) -> list[Path]:
    base = Path(folder)
    return [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []


def move_into(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` (created if needed), never overwriting: `name.1.csv`, … .

    A symlink is moved as a link; its target is left alone.
    """
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / path.name
    n = 0
    while destination.exists() or destination.is_symlink():
        n += 1
        destination = folder / f"{path.stem}.{n}{path.suffix}"
    shutil.move(str(path), str(destination))
    return destination
