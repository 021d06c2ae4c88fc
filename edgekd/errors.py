"""The one error type users see: a problem with their input, not a bug in edgekd."""

import click


class UserError(click.ClickException):
    """A problem with the user's input: exit status 2, one line that names the file and the fix."""

    exit_code = 2
