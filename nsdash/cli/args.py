"""argparse for nsdash: a parser whose errors are one line, and help formatters minus shutil.

Every verb's parse error is one line on stderr ("nsdash: MESSAGE; see 'nsdash VERB --help'",
exit status 1), never argparse's usage block and exit 2: ArgumentParser says so once.

argparse makes a help formatter for every add_argument() (it checks each
option's nargs by formatting it), and the formatter asks shutil for the
terminal's width: importing shutil brings bz2, lzma and zlib, on every
`nsdash cgls`, `journal`, `list`...  These formatters read the width the way
shutil does, with os alone.  Pass them as formatter_class.
"""

from __future__ import annotations

import argparse
import os
import sys

from nsdash.errors import UsageError

TYPE_CHECKING = False  # typing stays unimported at run time (as in nsdash.cli.quickparse)
if TYPE_CHECKING:
    from typing import Any, NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are a UsageError: one line through nsdash.cli,
    with HINT, or the verb's --help named (prog is the verb, `nsdash VERB`)."""

    def __init__(self, *args: Any, hint: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.hint or f"see '{self.prog} --help'")


def output_file(path: str, option: str) -> str:
    """PATH, which OPTION (--core, --flame) writes once the work is done: one that cannot be
    written is refused before the work, not after gdb or perf has run."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a directory", "name a file to write")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: {parent} is not a directory",
                         "create it first, or name a file in an existing directory")
    return path


def terminal_columns(default: int = 80) -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal on stdout, else DEFAULT."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    out = sys.__stdout__
    if out is None:
        return default
    try:
        return os.get_terminal_size(out.fileno()).columns or default
    except (AttributeError, ValueError, OSError):
        return default


class HelpFormatter(argparse.HelpFormatter):
    """argparse.HelpFormatter with the width found without shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        # argparse: the terminal's columns less 2, when no width is given.
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse.RawDescriptionHelpFormatter with the width found without shutil."""
