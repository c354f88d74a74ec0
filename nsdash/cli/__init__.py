"""The `nsdash` command: dispatch a verb to its module, turn errors into one line.

Each verb lives in its own module with `main(argv) -> int`, imported only when
that verb runs, so `nsdash spawn` never pays for importing the dashboard.
"""

from __future__ import annotations

import errno
import gc
import posix
import sys

from nsdash.errors import NsdashError, PrivilegeError
from nsdash.system.bareos import getenv

# verb -> module under nsdash.cli
VERBS: dict[str, str] = {
    "spawn": "spawn",
    "list": "machinectl",
    "status": "machinectl",
    "start": "machinectl",
    "login": "machinectl",
    "shell": "machinectl",
    "poweroff": "machinectl",
    "reboot": "machinectl",
    "terminate": "machinectl",
    "kill": "machinectl",
    "list-images": "machinectl",
    "ps": "machinectl",
    "set-property": "machinectl",
    "image-status": "images",
    "show-image": "images",
    "clone": "images",
    "rename": "images",
    "remove": "images",
    "read-only": "images",
    "export-tar": "images",
    "import-tar": "images",
    "create": "create",
    "cgls": "cgls",
    "cgtop": "cgtop",
    "journal": "journal",
    "systemctl": "systemctl",
    "dashboard": "dashboard",
    "trace": "trace",
    "debug": "debug",
    "profile": "profile",
    "_supervise": "supervise",
    "_remote": "remote",
    "_watch": "watch",
}

USAGE = """\
usage: nsdash [VERB] [OPTIONS...]

With no verb, opens the dashboard.

Containers:   spawn              run a command or boot an OS tree (systemd-nspawn's options)
Machines:     list, status, start, login, shell, poweroff, reboot, terminate, kill,
              list-images, ps    (machinectl's verbs)
              set-property NAME NAME=VALUE...  (live limits, as systemctl set-property --runtime)
Images:       image-status, show-image, clone, rename, remove, read-only,
              export-tar, import-tar   (machinectl's image verbs)
              create [--distribution=debian|ubuntu] NAME|DIR   (a bootable tree, by debootstrap)
Monitor:      cgls, cgtop        (systemd-cgls and systemd-cgtop)
Journals:     journal -M NAME    (journalctl for machines)
Units:        systemctl -M NAME  (a machine's own systemd)
Debugging:    trace, debug, profile -M NAME   (strace, gdb and perf from the host)

Remote:       nsdash -H [USER@]HOST[:PORT] VERB ...  (also --host=, $NSDASH_HOST): the verbs above
              but images, debugging and the dashboard, on HOST over your ssh;
              nsdash -H HOST1 -H HOST2 ... list: the machines of every host, with a HOST column

`nsdash VERB --help` describes each verb.  Set NSDASH_DEBUG=1 for tracebacks.
"""


def _err(text: str) -> None:
    from nsdash.system.text import escape  # errors may quote what a guest wrote

    sys.stderr.write(f"nsdash: {escape(text)}\n")


_teardown_free = False  # main() ran a verb whose module says TEARDOWN_FREE (short, read-only), or one over -H
_handlers_first = False  # ... or one that says EXIT_AFTER_HANDLERS (the dashboard)


def run() -> int:
    """The program (bin/nsdash, python -m nsdash): main(), and for the verbs that allow it, an
    exit without the interpreter's teardown.

    Tearing down the ~120 modules a D-Bus client imports costs about 4 ms, a tenth of
    `nsdash systemctl -M M list-units`, and does nothing for a verb that flushed its output and
    left no atexit handler, no thread and no file half-written: such a verb sets TEARDOWN_FREE.
    Such verbs also run with the cyclic garbage collector off, as the launcher starts them.
    A verb that says EXIT_AFTER_HANDLERS (the dashboard) runs with the collector on and exits
    so too, once the atexit handlers have run (logging's, which asyncio brings): the teardown
    of Textual's modules and of the dashboard's heap was 6 ms of `q`'s wait for the shell.
    """
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:  # started with 0, 1 or 2 closed
        _hold_closed_stdio()
    if getattr(sys.stdout, "encoding", "utf-8") != "utf-8" or getattr(sys.stderr, "encoding", "utf-8") != "utf-8":
        _ascii_where_needed()
    try:
        try:
            rc = main()
        except SystemExit as e:  # argparse's --help: its text may still be in the buffer
            if e.code is not None and not isinstance(e.code, int):
                raise
            rc = e.code or 0
        rc = _flush_stdout(rc)
        if _teardown_free:
            _exit_now(rc, handlers_first=_handlers_first)
    except KeyboardInterrupt:  # ^C while the last output is flushed: as during the verb
        rc = 130
    return rc


def _hold_closed_stdio() -> None:
    """/dev/null on a closed descriptor 0, 1 or 2, before the verb's first open(2) takes that
    number and what is meant for stdin, stdout or stderr (ours, a child's that inherits them)
    is that file (the supervisor's wake-up pipe was spawn's "stdin" at 0, read by the console
    relay).  0 reads as `</dev/null`; 1 is read-only, so writes fail as to a closed one
    (_ClosedStdout); 2 takes errors nowhere, and the verb's last flush of stderr works."""
    for fd, stream, flags in ((0, sys.stdin, posix.O_RDONLY), (1, sys.stdout, posix.O_RDONLY),
                              (2, sys.stderr, posix.O_WRONLY)):
        if stream is None and not _is_open(fd):  # (open after all: a test's None)
            try:
                null = posix.open("/dev/null", flags)
            except OSError:
                continue
            if null != fd:
                posix.dup2(null, fd)  # (inheritable, as what a closed one stands for)
                posix.close(null)
            else:
                posix.set_inheritable(fd, True)
    if sys.stdin is None and _is_open(0):
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - for good, as the interpreter's own
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stderr is None and _is_open(2):
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115 - for good


def _ascii_where_needed() -> None:
    """A locale that is not UTF-8: trees and marks in ASCII, as systemd draws them there, and no
    UnicodeEncodeError (a traceback for `nsdash cgls` under LANG=C with PYTHONUTF8=0)."""
    from nsdash.system import glyphs

    for stream in (sys.stdout, sys.stderr):
        if not glyphs.utf8(stream):
            glyphs.use_on(stream)


def _is_open(fd: int) -> bool:
    try:
        posix.fstat(fd)
    except OSError:
        return False
    return True


class _ClosedStdout:
    """sys.stdout when the program started without file descriptor 1 (Python leaves it None):
    a verb that prints fails as a write to a closed descriptor does, which main() reports in
    one line (coreutils: "write error: Bad file descriptor"); a verb that prints nothing works."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, posix.strerror(errno.EBADF))

    def flush(self) -> None:
        pass  # nothing is ever held: every write failed at once

    def fileno(self) -> int:
        return 1

    def isatty(self) -> bool:
        return False


# What a full disk or a failing device answers a write with.  Only writes fail with these, so
# such an error without a file name is the verb's output that could not be written.
_WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


def _stdout_failed(e: OSError) -> bool:
    """Whether E is our output failing (`nsdash list > /dev/full`), not some other OSError."""
    if e.filename is not None:
        return False
    if e.errno in _WRITE_ERRNOS:
        return True
    if e.errno == errno.EBADF and (isinstance(sys.stdout, _ClosedStdout) or not _fd_writable(1)):
        return True  # (`nsdash list 1</dev/null`: a descriptor 1 opened read-only fails so too)
    try:  # another errno (EIO...): ours only if stdout still cannot take what it holds
        sys.stdout.flush()
    except OSError:
        return True
    except ValueError:
        return False  # closed
    return False


def _fd_writable(fd: int) -> bool:
    from nsdash.system.fdio import writable  # only on this error's path

    return writable(fd)


def _write_error(e: OSError) -> int:
    """One line for output that could not be written, as coreutils says it; exit status 1."""
    fix = ("run it with its standard output open" if e.errno == errno.EBADF
           else "free some space or send the output elsewhere")
    _err(f"write error: {e.strerror or e}; {fix}")
    _stdout_to_devnull()  # so the interpreter's own last flush fails no more, and says nothing
    return 1


def _stdout_to_devnull() -> None:
    """Point file descriptor 1 at /dev/null: what stdout still holds goes nowhere, quietly."""
    try:
        fd = posix.open("/dev/null", posix.O_WRONLY)
    except OSError:
        return
    try:
        posix.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        posix.close(fd)


def _flush_stdout(rc: int) -> int:
    """Flush what the verb left in stdout's buffer while errors can still be reported: after
    main() returns, a full disk would be a traceback (or nothing, with exit status 120)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()  # `nsdash ... | head`: the reader went away; not an error
    except OSError as e:
        _write_error(e)
        return rc or 1
    except (ValueError, AttributeError):
        pass  # closed or gone: nothing of ours to flush
    return rc


def _exit_now(rc: int, handlers_first: bool = False) -> None:
    """os._exit(RC) once stdout and stderr are flushed, unless something still needs the teardown:
    a thread, or an atexit handler (HANDLERS_FIRST: those are run, as the interpreter would)."""
    import atexit  # built in: no import cost

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    if atexit._ncallbacks():
        if not handlers_first:
            return
        atexit._run_exitfuncs()  # (and forgets them: an ordinary exit after this runs none twice)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a closed pipe or stream: the ordinary exit reports it as it always has
    posix._exit(rc)


def main(argv: list[str] | None = None) -> int:
    """Run `nsdash ARGV`; its exit status.  Output that cannot be written is one line too."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # `nsdash list | head`: the reader went away; that is not an error.
        _stdout_to_devnull()
        return 0
    except OSError as e:
        # `nsdash list > /dev/full`: one line, exit status 1, as coreutils' "write error"
        if getenv("NSDASH_DEBUG") or not _stdout_failed(e):
            raise
        return _write_error(e)


def _main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if args and args[0] == "--version":
        from nsdash import __version__

        print(f"nsdash {__version__}")
        return 0
    debug = bool(getenv("NSDASH_DEBUG"))
    try:
        targets, args = _remote_targets(args)
    except NsdashError as e:
        _err(e.oneline())
        return e.exit_code
    if targets:
        return _run_remote(targets, args, debug)
    verb = args.pop(0) if args and not args[0].startswith("-") else "dashboard"
    module_name = VERBS.get(verb)
    if module_name is None:
        _err(f"unknown verb '{verb}'; run 'nsdash --help' for the list of verbs")
        return 2
    try:
        # __import__ rather than importlib.import_module: the importlib package (and the
        # warnings module it loads) is the one import every verb would make for this line.
        module = __import__(f"nsdash.cli.{module_name}", fromlist=["main"])
        global _teardown_free, _handlers_first
        _teardown_free = bool(getattr(module, "TEARDOWN_FREE", False))
        if not _teardown_free:
            # The launcher kept it off for the imports; a verb that runs long needs it.  What the
            # imports made lives as long as the process: frozen, no collection walks it again.
            gc.freeze()
            gc.enable()
        _handlers_first = bool(getattr(module, "EXIT_AFTER_HANDLERS", False))
        _teardown_free = _teardown_free or _handlers_first
        if module_name in ("machinectl", "images"):
            args.insert(0, verb)
        return int(module.main(args) or 0)
    except NsdashError as e:
        if debug:
            raise
        _err(e.oneline())
        return e.exit_code
    except PermissionError as e:
        # The one boundary for the many places a non-root caller hits root-only state
        # (/run/nsdash, /var/lib/machines, cgroups, /proc/PID/root): one line, no traceback.
        if debug:
            raise
        what = f" ({e.filename}: {e.strerror})" if e.filename else ""
        _err(PrivilegeError(f"'nsdash {verb}' needs root{what}", "run it with sudo").oneline())
        return PrivilegeError.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `nsdash list | head`: the reader went away; that is not an error.
        import contextlib  # here: every start would pay for it

        with contextlib.suppress(OSError):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        return 0


def _remote_targets(args: list[str]):  # -> (list[Target], args); typed loosely to keep imports lazy
    if not getenv("NSDASH_HOST") and not (args and args[0].startswith(("-H", "--host"))):
        return [], args  # the common case imports nothing more
    from nsdash.remote.target import split_host_option

    return split_host_option(args)


def _run_remote(targets, args: list[str], debug: bool) -> int:
    """`nsdash -H HOST VERB ...`: the verb runs on HOST (nsdash.remote.client); with several
    hosts, the verbs that merge across hosts (cli/remote.py)."""
    from nsdash.remote import client

    global _teardown_free
    gc.enable()  # every remote verb may run long (a dashboard, a console, `journal -f`)
    try:
        if not args or args[0].startswith("-"):
            # no verb: the dashboard over those hosts (its options only: -d)
            from nsdash.cli import dashboard

            return dashboard.main(args, hosts=targets)
        if len(targets) > 1:
            from nsdash.cli.remote import several_hosts

            return several_hosts(targets, args)
        # One verb on one host: it relays for as long as the verb runs, and ends without the
        # interpreter's teardown: it leaves nothing half done (its output flushed, its ssh
        # reaped, no thread).  (json loads in client.run once ssh runs.)
        _teardown_free = True
        return client.run(targets[0], args)
    except NsdashError as e:
        if debug:
            raise
        _err(e.oneline())
        return e.exit_code
    except KeyboardInterrupt:
        return 130
