"""`python -m kubin`: parse the command line and run the app or a headless command."""

import sys

from kubin.cli import main

if __name__ == "__main__":
    sys.exit(main())
