"""`python -m editmgt_core.bench COMMAND ...`: the benchmark commands (see core.py)."""

import sys

from .cli import main

sys.exit(main())
