"""nsdash.journal: machines' logs, read from the host with no journald needed.

The API the CLI and the dashboard use::

    from nsdash.journal import Filters, open_logs, Printer

    log = open_logs(["web", "db"], filters=Filters(priorities=parse_priority("warning")))
    history = log.tail(200)          # last 200 entries over both machines, oldest first
    fds = log.filenos()              # readable when any source changed (inotify)
    ...                              # poll/select on fds with a timeout of at most
                                     # log.recheck_ms() (100 ms with journals), or log.wait()
    new = log.read_new()             # non-blocking: entries written since, by time

journald signals a change to its files only from a 250 ms timer, so a reader
woken by inotify alone sees entries 250-500 ms late (journalctl -f does);
calling read_new() again after recheck_ms() even without an event brings that
under 100 ms at the cost of one sd_journal_next per journal.
    log.close()                      # (or use `with open_logs(...) as log:`)

- `Entry`: realtime (µs since the epoch), machine, fields (raw bytes by
  journal field name), properties message, priority (int or None),
  boot_id, identifier, pid, unit; `event` is set ("boot 2", "reboot",
  "poweroff", "exited", "killed") on console-log separators.
- `open_logs(machines, directories=(), filters=None, detail=False)` ->
  `MergedLog` with entries() (all, oldest first), tail(n), read_new(),
  filenos(), wait(timeout), follow(timeout), skipped (messages about
  files/entries that could not be read), sources.  detail=True also fetches
  cursors and monotonic times (needed only by the json format).
  Raises MachineNotFound for an unknown machine and NsdashError for a machine
  with no log at all or a boot that is not in the journal.
- `locate_machine(name)` (= nsdash.journal.locate.locate) -> `MachineLogs` (machine_id, journal_dirs, console_log,
  running) without opening anything.
- `Filters(priorities, units, boot, since, until)` with the parsers
  parse_priority ("err", "3", "warning..err"), mangle_unit ("sshd" ->
  "sshd.service"), parse_boot ("-1", ID) and parse_time (journalctl syntax).
- `Printer(out, mode, color, tag_machines)` renders journalctl's short,
  short-precise, json and cat formats; `color_of(priority)` gives the escape
  sequences journalctl uses, for widgets that style lines themselves.

Machines that keep no journal (BusyBox, a plain command) yield their
supervisor console log through the same interface (priority None for lines,
6 for separators).  Nothing here imports textual.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is 2 ms of every `nsdash journal`; the annotation is a string
if TYPE_CHECKING:
    from typing import Any

# Imported on first use, so `nsdash.journal.locate` (used by the launcher) does not load systemd-python.
_EXPORTS = {
    "Entry": "entry", "Filters": "filters", "mangle_unit": "filters", "parse_boot": "filters",
    "parse_priority": "filters", "parse_time": "filters", "FORMATS": "format", "Printer": "format",
    "color_of": "format", "MachineLogs": "locate", "locate_machine": "locate", "MergedLog": "merge",
    "open_logs": "merge",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nsdash.journal' has no attribute {name!r}")
    # __import__, not importlib.import_module: the importlib package is one more import per run
    return getattr(__import__(f"nsdash.journal.{module}", fromlist=["_"]), name.removesuffix("_machine"))
