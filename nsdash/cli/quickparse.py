"""An argparse parser that imports argparse only when a command line needs it.

Importing argparse brings gettext, locale, re and enum: about as long as an
empty interpreter's start, on every `nsdash cgls`.  `Parser` records the
add_argument() calls as argparse takes them and reads the common command lines
itself: options spelled out in full (`-M NAME`, `--machine=NAME`, `-b`),
stored, counted as flags, appended or taken as constants, and positionals in one
run.  Anything else (--help, an abbreviation, `-bn1`, `--`, a value that starts
with '-', an error of any kind) goes to the real argparse parser, built from
the same calls, which prints the help or the error as before.  So the quick
reading only ever gives what argparse gives: tests/unit/test_quickparse.py
compares the two on every read-only verb's parser.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes this as true; at run time typing and argparse stay unimported
if TYPE_CHECKING:
    import argparse
    from typing import Any

SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS
REMAINDER = "..."  # argparse.REMAINDER

# What the quick reading understands of add_argument(); any other keyword, action or nargs
# leaves the whole parser to argparse.
_KEYWORDS = {"action", "dest", "default", "type", "choices", "const", "nargs", "help", "metavar", "required"}
_ACTIONS = {None, "store", "store_true", "store_false", "store_const", "append"}


class Namespace:
    """argparse.Namespace without argparse: the options as attributes."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    if TYPE_CHECKING:  # as argparse.Namespace is typed: any option by name
        def __getattr__(self, name: str) -> Any: ...

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in sorted(vars(self).items()))})"


class _Action:
    """One add_argument() call, with what argparse would derive from it."""

    def __init__(self, flags: tuple[str, ...], kwargs: dict[str, Any], group: int | None) -> None:
        self.flags = flags
        self.kwargs = kwargs
        self.group = group
        self.positional = not flags[0].startswith("-")
        action = kwargs.get("action")
        self.action = "store" if action is None else action
        if "dest" in kwargs:
            self.dest = kwargs["dest"]
        elif self.positional:
            self.dest = flags[0]
        else:  # argparse: the first long option, else the first short one, '-' made '_'
            longs = [f for f in flags if f.startswith("--")]
            self.dest = (longs or list(flags))[0].lstrip("-").replace("-", "_")
        default_default = False if self.action == "store_true" else True if self.action == "store_false" else None
        self.default = kwargs.get("default", default_default)
        self.nargs = kwargs.get("nargs")
        self.const = kwargs.get("const")
        self.type = kwargs.get("type")
        self.choices = kwargs.get("choices")
        self.required = bool(kwargs.get("required", False))

    def understood(self) -> bool:
        if not set(self.kwargs) <= _KEYWORDS or self.kwargs.get("action") not in _ACTIONS:
            return False
        if self.positional:
            return self.action == "store" and self.nargs in (None, "?", "*", "+") and self.choices is None
        if self.action in ("store", "append"):
            return self.nargs is None or (self.nargs == "?" and self.action == "store")
        return self.nargs is None

    def value(self, text: str) -> tuple[bool, Any]:
        """(True, TEXT converted and checked), or (False, None) where argparse would report an error."""
        if self.type is not None:
            try:
                converted = self.type(text)
            except Exception:  # argparse reports (or raises) it: let it
                return False, None
        else:
            converted = text
        if self.choices is not None and converted not in self.choices:
            return False, None
        return True, converted


class _Group:
    """add_mutually_exclusive_group()'s result: its options conflict with each other."""

    def __init__(self, parser: Parser, index: int, required: bool) -> None:
        self._parser = parser
        self.index = index
        self.required = required

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        self._parser._add(flags, kwargs, self.index)


class Parser:
    """argparse.ArgumentParser's calls, read quickly where that is safe (see the module docstring).

    RAW: the description and epilog keep their line breaks (RawDescriptionHelpFormatter).
    HINT: what a parse error's one line ends with (nsdash.cli.args.ArgumentParser); by default
    "see 'PROG --help'".
    """

    def __init__(self, prog: str, description: str | None = None, epilog: str | None = None, *,
                 raw: bool = False, hint: str | None = None, add_help: bool = True) -> None:
        self.prog = prog
        self._description = description
        self._epilog = epilog
        self._raw = raw
        self._hint = hint
        self._add_help = add_help
        self._actions: list[_Action] = []
        self._groups: list[bool] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        self._add(flags, kwargs, None)

    def add_mutually_exclusive_group(self, required: bool = False) -> _Group:
        self._groups.append(required)
        return _Group(self, len(self._groups) - 1, required)

    def _add(self, flags: tuple[str, ...], kwargs: dict[str, Any], group: int | None) -> None:
        self._actions.append(_Action(flags, kwargs, group))

    def parse_args(self, argv: list[str], namespace: Any = None) -> Any:
        return self._parse(argv, namespace, intermixed=False)

    def parse_intermixed_args(self, argv: list[str], namespace: Any = None) -> Any:
        return self._parse(argv, namespace, intermixed=True)

    def _parse(self, argv: list[str], namespace: Any, intermixed: bool) -> Any:
        ns = Namespace() if namespace is None else namespace
        quick = Namespace()  # apart: argparse keeps what it finds set, and a quick try may stop half way
        if self.quick(argv, quick, intermixed):
            for name, value in vars(quick).items():
                setattr(ns, name, value)
            return ns
        real = self.argparse_parser()
        return (real.parse_intermixed_args if intermixed else real.parse_args)(argv, namespace=ns)

    # ------------------------------------------------------------- the real parser

    def argparse_parser(self) -> argparse.ArgumentParser:
        """The argparse parser these calls describe (for help, errors and what quick() leaves)."""
        import argparse

        from nsdash.cli.args import ArgumentParser, HelpFormatter, RawDescriptionHelpFormatter

        class _Real(ArgumentParser):
            def print_help(self, file: Any = None) -> None:
                # argparse's own drops a failed write (`--help > /dev/full` said nothing, status
                # 0); this one raises it, for nsdash.cli to report as a write error.
                import sys

                (file or sys.stdout).write(self.format_help())

        real = _Real(prog=self.prog, description=self._description, epilog=self._epilog,
                     add_help=self._add_help, hint=self._hint,
                     formatter_class=RawDescriptionHelpFormatter if self._raw else HelpFormatter)
        groups = [real.add_mutually_exclusive_group(required=r) for r in self._groups]
        # argparse tells SUPPRESS and REMAINDER by identity: hand it its own objects
        ours = {SUPPRESS: argparse.SUPPRESS, REMAINDER: argparse.REMAINDER}
        for a in self._actions:
            kwargs: dict[str, Any] = {k: ours.get(v, v) if isinstance(v, str) else v for k, v in a.kwargs.items()}
            (real if a.group is None else groups[a.group]).add_argument(*a.flags, **kwargs)
        return real

    # ------------------------------------------------------------- the quick reading

    def quick(self, argv: list[str], ns: Any, intermixed: bool = False) -> bool:
        """Set NS from ARGV as argparse would and say True, or say False (NS then half set) where
        argparse might differ or object: the caller then asks argparse."""
        if not all(a.understood() for a in self._actions):
            return False
        options = {f: a for a in self._actions if not a.positional for f in a.flags}
        positionals = [a for a in self._actions if a.positional]
        for a in self._actions:
            if a.dest != SUPPRESS and a.default != SUPPRESS and not hasattr(ns, a.dest):
                setattr(ns, a.dest, a.default)
        words: list[str] = []
        seen: list[_Action] = []
        run_ended = False  # a positional run was followed by an option
        i = 0
        while i < len(argv):
            token = argv[i]
            i += 1
            if not token.startswith("-"):
                if words and run_ended and not intermixed:
                    return False  # argparse splits positionals around options its own way
                words.append(token)
                continue
            run_ended = bool(words)
            explicit = None
            found = options.get(token)
            if found is None:
                name, eq, rest = token.partition("=")
                found = options.get(name) if eq and name.startswith("--") else None
                if found is None:
                    return False  # --help, an abbreviation, -abc, --, a negative number...
                explicit = rest
            a = found
            if a.action in ("store_true", "store_false", "store_const"):
                if explicit is not None:
                    return False
                value: Any = {"store_true": True, "store_false": False}.get(a.action, a.const)
            else:
                text: Any
                if explicit is not None:
                    text = explicit
                elif i < len(argv) and not argv[i].startswith("-"):
                    text = argv[i]
                    i += 1
                elif a.nargs == "?":
                    text = a.const
                else:
                    return False
                ok, value = a.value(text) if isinstance(text, str) else (True, text)
                if not ok:
                    return False
                if a.action == "append":
                    value = [*(getattr(ns, a.dest, None) or []), value]
            if a.group is not None and any(s.group == a.group and s is not a for s in seen):
                return False  # not allowed with another of its group
            seen.append(a)
            setattr(ns, a.dest, value)
        if not self._positionals(positionals, words, ns):
            return False
        for a in self._actions:
            if a in seen or a.positional:
                continue
            if a.required:
                return False
            # argparse converts a string default of an option not given by its type
            if isinstance(a.default, str) and a.default != SUPPRESS and getattr(ns, a.dest, None) is a.default:
                ok, value = a.value(str(a.default))
                if not ok:
                    return False
                setattr(ns, a.dest, value)
        return not any(req and not any(s.group == g for s in seen) for g, req in enumerate(self._groups))

    @staticmethod
    def _positionals(specs: list[_Action], words: list[str], ns: Any) -> bool:
        """WORDS given to positional SPECS as argparse's pattern match would: the ones with one
        word first, then the optional ones, then one '*' or '+' for the rest; other shapes -> False."""
        kinds = "".join({None: "1", "?": "?", "*": "*", "+": "+"}[a.nargs] for a in specs)
        shape_ok = kinds.lstrip("1").lstrip("?") in ("", "*", "+")
        if not shape_ok:
            return False
        rest = list(words)
        tail = 1 if kinds.endswith("+") else 0
        for a in specs:
            if a.nargs is None or (a.nargs == "?" and len(rest) > tail):
                if not rest:
                    return False
                ok, value = a.value(rest.pop(0))
            elif a.nargs == "?":
                if not isinstance(a.default, str):
                    continue  # the default, set already
                ok, value = a.value(a.default)
            elif a.nargs == "+" and not rest:
                return False
            elif not rest:  # '*' with no word: the default, or [] without one
                ok, value = True, ([] if a.default is None else a.default)
            else:
                values = [a.value(w) for w in rest]
                ok, value = all(v[0] for v in values), [v[1] for v in values]
                rest = []
            if not ok:
                return False
            setattr(ns, a.dest, value)
        return not rest
