import sys

from covfuzz.cli import main

sys.exit(main())
