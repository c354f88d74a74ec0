import gc
import sys

gc.disable()  # as bin/nsdash does: nsdash.cli.main turns it back on for verbs that run long

from nsdash.cli import run  # noqa: E402

sys.exit(run())
