"""`python -m trbert`: the same as the `trbert` command."""

import sys

from .cli import main

sys.exit(main())
