"""`python -m edgekd.cli`: the same as the `edgekd` command."""

import sys

from edgekd.cli import main

sys.exit(main())
