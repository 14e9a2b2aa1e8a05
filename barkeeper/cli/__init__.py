"""The `barkeeper` command line: one typer app (`app.py`); each command module registers on it
and `main.py` assembles them. Nothing below imports from here."""
