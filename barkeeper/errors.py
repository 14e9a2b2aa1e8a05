"""Domain errors: a user mistake surfaces as one readable line, never a traceback."""


class BarkeeperError(ValueError):
    """Base of every error caused by input a user can fix; the CLI exits 2 with its message."""


class InputFileError(BarkeeperError):
    """A file cannot be read as bars at all (missing, empty, wrong format)."""


class ParameterError(BarkeeperError):
    """A parameter is out of range or inconsistent; the message names it and the fix."""


class UnknownRunError(BarkeeperError):
    """A run id (or --latest) names no run in the store."""


class RepositoryChangedError(BarkeeperError):
    """The repository no longer holds the rows a run read, so its series cannot be rebuilt."""


class StoreError(BarkeeperError):
    """The store cannot be used (not a database, corrupted, locked, full, read-only): the
    environment's problem, not a bug; the message names the store and what to do."""
