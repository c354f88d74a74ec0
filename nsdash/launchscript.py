"""The `nsdash` command `make venv` installs: bin/nsdash with the environment's directories written in.

bin/nsdash runs Python without `site`; what it needs of site is the directories
site would add: the environment's site-packages, then each directory line of its
.pth files (the editable install's), in site's order, no .pth code run.  Found
here once, at install, rather than on every run (a listing, two files read and
the code that does it compiled each time: about 1.5 M instructions, 25 system calls).

    python -m nsdash.launchscript VENV < bin/nsdash > VENV/bin/nsdash
"""

from __future__ import annotations

import os
import sys

SITE_LINE = "SITE = None"
SHEBANG_MAX = 256  # bytes of a script's first line the kernel reads (BINPRM_BUF_SIZE), its newline included


class PrefixError(ValueError):
    """An environment whose interpreter no first line can name."""


def shebang(prefix: str) -> str:
    """The first line that runs PREFIX's interpreter with -S.  The kernel splits it at the first
    blank (the rest is one argument) and reads at most SHEBANG_MAX bytes of it: a prefix with
    a blank runs another program, and a line one byte longer is cut to `python -`, which runs
    its standard input as the program (seen on this kernel)."""
    line = f"#!{prefix}/bin/python -S\n"
    if any(c.isspace() for c in prefix):
        raise PrefixError(f"{prefix!r} has a blank in it, which a script's first line cannot hold")
    if len(line.encode()) > SHEBANG_MAX:
        raise PrefixError(f"{prefix!r} makes a first line over the kernel's {SHEBANG_MAX} bytes")
    return line


def site_dirs(prefix: str) -> list[str]:
    """The directories site adds for the environment at PREFIX, in its order, those that exist."""
    v = sys.version_info
    site_packages = f"{prefix}/lib/python{v[0]}.{v[1]}/site-packages"
    dirs = [site_packages]
    try:
        pth_files = sorted(n for n in os.listdir(site_packages) if n.endswith(".pth"))
    except OSError:
        pth_files = []
    for name in pth_files:
        try:
            with open(os.path.join(site_packages, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.rstrip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue  # a comment, or code: nsdash's imports need no .pth hook
            path = os.path.abspath(os.path.join(site_packages, line))
            if os.path.exists(path):
                dirs.append(path)
    return list(dict.fromkeys(dirs))


def installed(source: str, prefix: str) -> str:
    """SOURCE (bin/nsdash's text) as installed in the environment at PREFIX: its interpreter on
    the first line, its directories in SITE."""
    lines = source.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(SITE_LINE)]
    if not lines or len(at) != 1:
        raise ValueError(f"not bin/nsdash: no single line starting {SITE_LINE!r}")
    lines[0] = shebang(prefix)
    lines[at[0]] = f"SITE = {(prefix, site_dirs(prefix))!r}\n"
    # The checkout's way (`if SITE is None:` and its block) is dead code here: not compiled per run.
    end = at[0] + 1
    while end < len(lines) and (lines[end].startswith(("if SITE is None", " ")) or not lines[end].strip()):
        end += 1
    return "".join(lines[:at[0] + 1] + lines[end:])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nsdash.launchscript VENV < bin/nsdash > VENV/bin/nsdash", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(installed(sys.stdin.read(), os.path.abspath(argv[0])))
    except PrefixError as e:
        print(f"nsdash.launchscript: the environment {e}; make it at a shorter path without blanks",
              file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"nsdash.launchscript: standard input is {e}; give it bin/nsdash", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
