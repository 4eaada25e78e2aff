"""`python -m editmgt_core.cli COMMAND ...`: the same command line as `python -m editmgt_core`."""

import sys

from . import main

sys.exit(main())
