"""`python -m covfuzz`: the `covfuzz` command."""

import sys

from covfuzz.cli import main

sys.exit(main())
