"""The frozen app's entry point: `playground`'s command line, and the app with no subcommand.

Started with `SERVE_FLAG`, it is the child that renders chat templates (see playground/chat.py).
"""

import sys

from playground.chat import SERVE_FLAG, serve
from playground.cli import main

if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        serve()
        sys.exit(0)
    sys.exit(main())
