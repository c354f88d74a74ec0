"""`nsdash cgls`: the cgroup tree with its processes, drawn like systemd-cgls.

Reads the hierarchy that holds every process (cgroup2, else name=systemd),
lists children in the kernel's directory order, processes before child
cgroups, hides empty cgroups unless -a and kernel threads unless -k, and cuts
command lines to the terminal width (80 columns when not on a terminal)
unless -l.
"""

from __future__ import annotations

import posix
import sys

from nsdash.cli.quickparse import SUPPRESS, Parser
from nsdash.errors import UsageError
from nsdash.launcher.booleans import parse_boolean
from nsdash.monitor import procs, tree
from nsdash.monitor.tree import CgroupNode
from nsdash.system import bareos, cgroupfs
from nsdash.system.text import escape, escape_bytes

TYPE_CHECKING = False  # mypy reads this as True; collections stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Callable

    Cmdline = Callable[[int, int | None], str | None]  # (pid, max columns) -> text or None if gone

BRANCH, RIGHT, VERTICAL, SPACE = "├─", "└─", "│ ", "  "

DIFFERENCES = """\
Differences from systemd-cgls (252):
  - a subtree the caller may not read is marked '(unreadable)' (systemd shows it empty);
  - PATH is a cgroup path; units (-u, --user-unit) and CONTROLLER:PATH are not taken;
  - there is no pager.
"""


def build_parser() -> Parser:
    p = Parser("nsdash cgls", "Recursively show control group contents.", DIFFERENCES, raw=True,
               hint="see 'nsdash cgls --help'")
    p.add_argument("-a", "--all", action="store_true", help="Show all groups, including empty")
    p.add_argument("-k", dest="kernel", action="store_true", help="Include kernel threads in output")
    p.add_argument("-l", "--full", action="store_true", help="Do not ellipsize process tree members")
    p.add_argument("-M", "--machine", help="Show container")
    p.add_argument("--xattr", default="yes", help="Show cgroup extended attributes (yes|no)")
    p.add_argument("--cgroup-id", default="yes", help="Show cgroup ID (yes|no)")
    p.add_argument("--no-pager", action="store_true", help="Do not pipe output into a pager (never does)")
    p.add_argument("--cgroup-root", default=cgroupfs.DEFAULT_ROOT_DIR, help=SUPPRESS)
    p.add_argument("paths", nargs="*", metavar="PATH", help="Control groups to show")
    return p


# ------------------------------------------------------------------ pure drawing

def _populated(node: CgroupNode) -> bool:
    # Whatever we may not read might hold processes: shown, like systemd-cgls does.
    return any(n.pids or n.unreadable for n in node.iter())


def draw(node: CgroupNode, cmdline: Cmdline, *, columns: int | None, show_all: bool = False,
         is_kthread: Callable[[int], bool] = lambda pid: False, kernel: bool = False,
         cgroup_id: Callable[[str], int | None] = lambda path: None,
         xattrs: Callable[[str], list[tuple[str, str]]] = lambda path: [], prefix: str = "") -> list[str]:
    """The lines systemd-cgls prints under one cgroup (not its own name).

    COLUMNS None: full command lines (-l).
    """
    lines: list[str] = []
    children = [c for c in node.children if not c.vanished and (show_all or _populated(c))]
    pids = sorted(set(node.pids or ()))
    if not kernel:
        pids = [p for p in pids if not is_kthread(p)]
    texts = [(p, cmdline(p, None if columns is None else _cmd_columns(columns, pids))) for p in pids]
    texts = [(p, t) for p, t in texts if t is not None]
    if texts:
        width = len(str(texts[-1][0] if pids else 0))
        width = len(str(max(pids)))
        for i, (pid, text) in enumerate(texts):
            glyph = BRANCH if (children or i < len(texts) - 1) else RIGHT
            lines.append(f"{prefix}{glyph}{pid:>{width}} {text}")
    for i, child in enumerate(children):
        last = i == len(children) - 1
        name = child.name
        cid = cgroup_id(child.path)
        suffix = f" (#{cid})" if cid else ""
        if child.unreadable:
            suffix += " (unreadable)"  # nsdash's addition; systemd-cgls shows nothing inside
        lines.append(f"{prefix}{RIGHT if last else BRANCH}{name}{suffix}")
        for key, value in xattrs(child.path):
            lines.append(f"{prefix}{SPACE if last else VERTICAL}→ {key}: {value}")
        sub_columns = None if columns is None else columns - 2
        lines.extend(draw(child, cmdline, columns=sub_columns, show_all=show_all, is_kthread=is_kthread,
                          kernel=kernel, cgroup_id=cgroup_id, xattrs=xattrs, prefix=prefix + (SPACE if last else VERTICAL)))
    return lines


def _cmd_columns(columns: int, pids: list[int]) -> int:
    """Room left for a command line after '├─PID ' (systemd: 20 when nothing is left)."""
    pid_width = len(str(max(pids))) if pids else 1
    return columns - (pid_width + 3) if columns > pid_width + 3 else 20


# ------------------------------------------------------------------ effects

def _columns() -> int:
    env = bareos.getenv("COLUMNS") or ""
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        import shutil  # a terminal only: shutil brings bz2, lzma and zlib with it

        return shutil.get_terminal_size().columns
    return 80


def _cgroup_id(mount: str, unified: bool) -> Callable[[str], int | None]:
    def get(path: str) -> int | None:
        if not unified:
            return None
        try:
            return posix.stat(mount + path).st_ino
        except OSError:
            return None
    return get


def _xattrs(mount: str) -> Callable[[str], list[tuple[str, str]]]:
    """The cgroup's user.* and trusted.* attributes (systemd keeps the invocation ID there)."""
    def get(path: str) -> list[tuple[str, str]]:
        directory = mount + path
        try:
            names = posix.listxattr(directory)
        except OSError:
            return []
        out = []
        for name in names:
            if name.startswith(("user.", "trusted.")):
                try:
                    value = posix.getxattr(directory, name)
                except OSError:
                    continue
                out.append((escape(name), escape_bytes(value)))
        return out
    return get


def main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv)
    layout = cgroupfs.detect(opts.cgroup_root)
    if layout.unified_dir is None and not layout.v1_dirs:
        raise UsageError(f"no cgroup hierarchy under {opts.cgroup_root}", "mount cgroupfs first")
    mount = tree.primary_mount(layout)
    base = "/"
    if opts.machine is not None:
        from nsdash.monitor.machines import MachineMap, machine_cgroup  # -M only: it reads machine state

        base = machine_cgroup(opts.machine, [mount], MachineMap())
    paths = [tree.normalize(base + tree.user_path(p)) for p in opts.paths]
    for p in paths:
        if not bareos.isdir(mount + ("" if p == "/" else p)):
            raise UsageError(f"control group '{p}' does not exist", "see 'nsdash cgls' for the tree")
    columns = None if opts.full else _columns()
    kthreads: dict[int, bool] = {}

    def is_kthread(pid: int) -> bool:
        if pid not in kthreads:
            kthreads[pid] = procs.is_kernel_thread(pid)
        return kthreads[pid]

    cid = _cgroup_id(mount, mount == layout.unified_dir)
    if not parse_boolean(opts.cgroup_id, "--cgroup-id"):
        cid = _cgroup_id(mount, False)
    xattrs = _xattrs(mount) if parse_boolean(opts.xattr, "--xattr") else (lambda path: [])
    out: list[str] = []
    for p in paths or [base]:
        node = tree.walk(mount, p, with_pids=True, sort=False)
        out.append(f"Control group {p}:")
        if not paths and p == "/":
            out.append("-.slice")
        out.extend(draw(node, procs.cmdline, columns=columns, show_all=opts.all, is_kthread=is_kthread,
                        kernel=opts.kernel, cgroup_id=cid, xattrs=xattrs))
    # Cgroup names and command lines are the guest's: every line escaped (each is one line).
    sys.stdout.write("\n".join(escape(line) for line in out) + "\n")
    return 0
