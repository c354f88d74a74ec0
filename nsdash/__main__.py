import sys

from nsdash.cli import main

sys.exit(main())
