"""`python -m editmgt_core COMMAND ...`: the command line (see cli/)."""

import sys

from .cli import main

sys.exit(main())
