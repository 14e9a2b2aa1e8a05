"""Path confinement: files a flow touches stay inside the folder it was configured with.

Flow parameters come from the Prefect UI, so a folder or file name there is untrusted input: it
must not reach outside the configured folder through `..`, an absolute path or a symlink.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from barkeeper.errors import ParameterError


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


def landed_files(folder: Path) -> list[Path]:
    """The files waiting in a landing folder: regular entries at its top level, by name.

    Hidden files (editors' and uploaders' temporaries) and sub-folders (`done/`, `rejected/`)
    are not waiting files. Symlinks are listed as they are, so the caller can reject the ones
    that lead outside the folder.
    """
    return sorted(
        p
        for p in Path(folder).iterdir()
        if not p.name.startswith(".") and (p.is_symlink() or p.is_file())
    )


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
