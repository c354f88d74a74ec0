"""`nsdash _remote`: the far side of -H, started by sshd (see nsdash.remote.server).  Hidden:
nobody types it; `nsdash -H HOST VERB` on the near side runs it over ssh."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from nsdash.cli import main as nsdash_main
    from nsdash.errors import UsageError
    from nsdash.remote import server

    if argv:
        raise UsageError("'nsdash _remote' takes no arguments", "it is the far side of 'nsdash -H HOST VERB'")
    return server.main(nsdash_main)
