"""`python -m clients.cli` runs the `tally` command."""

import sys

from clients.cli.main import main

sys.exit(main())
