"""Folders reports are written to, checked before any work so a run never fails at its end."""

from __future__ import annotations

import tempfile
from pathlib import Path

from barkeeper.errors import ParameterError


def writable_folder(path: Path | str, setting: str) -> Path:
    """`path`, created if missing, after proving a file can be written there.

    Raises ParameterError naming `setting` (the variable that chose the folder) and the fix.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ParameterError(
            f"{setting}: reports folder {folder} is not writable ({reason}); "
            f"set {setting} to a folder you can write"
        ) from None
    return folder
