"""Thin Prefect tasks: each wraps one piece of I/O or one library call."""
