"""The --wire option of `edgekd simulate` and `edgekd stream`: which wire format the device speaks."""

from __future__ import annotations

import functools

import click

from edgekd.errors import UserError
from firmware_bridge.codecs import CODECS, DEFAULT_WIRE


def wire_option(command):
    """Adds --wire (a key of firmware_bridge.codecs.CODECS) to `command`, which receives it as `wire`. Also takes
    the older --text, hidden: the same as --wire text, so that scripts written for it keep working."""

    @functools.wraps(command)
    def with_wire(*args, wire, text, **kwargs):
        if text and wire not in (None, "text"):
            raise UserError(f"--text is the old spelling of --wire text; give --wire {wire} or --text, not both")
        return command(*args, wire="text" if text else wire or DEFAULT_WIRE, **kwargs)

    with_wire = click.option("--text", is_flag=True, hidden=True, help="Deprecated: the same as --wire text.")(
        with_wire
    )
    return click.option(
        "--wire",
        type=click.Choice(list(CODECS)),
        help="frame: binary frames (firmware_bridge/PROTOCOL.md), any number of streams; text: one line of "
        f"comma-separated values per sample, one stream. [default: {DEFAULT_WIRE}]",
    )(with_wire)
