"""The frozen app's entry point: `playground`'s command line, and the app with no subcommand."""

import sys

from playground.cli import main

if __name__ == "__main__":
    sys.exit(main())
