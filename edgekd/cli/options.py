"""Option callbacks shared by several commands."""

from __future__ import annotations

import click


def parse_batch_size(ctx, param, value):
    """--batch-size: a number of windows, or auto (None: chosen from the training windows)."""
    if value is None or value == "auto" or isinstance(value, int):
        return None if value in (None, "auto") else value
    if not str(value).isdigit() or int(value) < 1:
        raise click.BadParameter("give a number of windows (1 or more) or auto")
    return int(value)


def parse_comma_list(ctx, param, value):
    """A, B, C on the command line or a list in a config file: a list of names."""
    if value is None or isinstance(value, list):
        return value or []
    return [v.strip() for v in str(value).split(",") if v.strip()]
