import sys

from nsdash.cli import run

sys.exit(run())
