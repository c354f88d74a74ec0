"""A guest writes every hostile sequence it can into what the host shows; the host's terminal stays the host's.

A real BusyBox machine plants escape sequences (window title, OSC 52 clipboard
write and read, DCS passthrough to tmux, terminal reset, window resize, the
queries that make a terminal answer: DA1, DA2, DSR, OSC 10/11), C1 controls in
UTF-8, bidi overrides and Rich markup in its os-release, hostname, console (and
so its console log and journal pane) and cgroup names (container root may mkdir
any name in its own cgroup; done here from the host, the same directory).
Meanwhile the real `nsdash` dashboard runs in tmux at 160x48: its pane title,
clipboard buffers, window size and layout, and the app's state stay as they
were, no action is triggered (no confirmation appears, the machine runs), and
the CLI's outputs hold no ESC, C1 or bidi character.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _tmux import Tmux
from conftest import NSDASH, run_nsdash

from nsdash.errors import NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines import client, registry
from nsdash.machines import state as st
from nsdash.system import cgroupfs
from nsdash.system.text import escape

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

# Every sequence of the issue, each behind a letter that would be a key binding if it leaked.
SEQUENCES = {
    "title0": b"\x1b]0;PWNED-TITLE\x07",
    "title2": b"\x1b]2;PWNED-TITLE2\x1b\\",
    "clipset": b"\x1b]52;c;aGFja2Vk\x07",  # "hacked"
    "clipget": b"\x1b]52;c;?\x07",
    "fg": b"\x1b]10;?\x07",
    "bg": b"\x1b]11;?\x1b\\",
    "da1": b"\x1b[c",
    "da2": b"\x1b[>c",
    "dsr": b"\x1b[6n",
    "dcs": b"\x1bPtmux;\x1b\x1b]2;PASSTHROUGH\x07\x1b\\",
    "reset": b"\x1bc",
    "resize": b"\x1b[8;20;60t",
    "altscr": b"\x1b[?1049l",
    "c1csi": "\u009b>c".encode(),
    "c1osc": "\u009d2;C1-TITLE\u009c".encode(),
    "bidi": "\u202eevil\u2066x\u2069".encode(),
    "markup": b"[@click=app.quit]q[/] [@click=app.action_machine_action('terminate')]x[b]",
    "keys": b"x\rq\r",
}
PAYLOAD = b"".join(b"hostile-" + k.encode() + b" " + v + b"\n" for k, v in SEQUENCES.items())
# Raw in any output: ESC and the other C0 controls but tab/newline, DEL, C1 as UTF-8, bidi/format characters.
FORBIDDEN = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xaf]")


class HostileTerminal(Tmux):
    """A terminal that lets an application do the most it can: whatever reached it raw would
    show in its buffers, title or window name (state())."""

    def start(self, command: list[str], cols: int = 140, rows: int = 40) -> None:
        super().start(command, cols, rows)
        # Take OSC 52 into buffers, pass DCS through, rename windows.
        for option in (("set-clipboard", "on"), ("allow-passthrough", "on"), ("allow-rename", "on")):
            with contextlib.suppress(subprocess.CalledProcessError):
                self.run("set-option", "-g", *option)
        # The window's name follows the running program (bash, then python) on tmux's own timer:
        # name it once, so a later change can only come from a rename sequence (allowed above).
        self.run("rename-window", "-t", self.session, "nsdash")
        self.run("set-window-option", "-t", self.session, "automatic-rename", "off")

    def state(self) -> dict[str, str]:
        fmt = "#{pane_title}|#{window_name}|#{window_width}x#{window_height}|#{window_layout}|#{pane_dead}"
        title, window, size, layout, dead = self.run("display-message", "-p", "-t", self.session, fmt).strip().split("|")
        return {"title": title, "window": window, "size": size, "layout": layout, "dead": dead,
                "buffers": self.run("list-buffers")}


def _hierarchies() -> list[Path]:
    layout = cgroupfs.detect()
    return [Path(p) for p in layout.hierarchies()]


def _plant_cgroups(cgroup: str) -> list[Path]:
    """One cgroup per sequence (a name holds no '/'), in every hierarchy that has the machine's cgroup."""
    made = []
    for mount in _hierarchies():
        top = mount / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        for key, seq in SEQUENCES.items():
            name = (key.encode() + seq).replace(b"/", b"|")[:200]
            path = Path(os.fsdecode(bytes(top) + b"/" + name))
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            made.append(path)
    return made


def _show_own_cgroups(tmux: HostileTerminal, cgroup: str, text: str) -> str:
    """The screen once TEXT, the name of a cgroup planted in CGROUP (the selected machine's),
    shows in the CPU table.  The table holds the whole host's cgroups, busiest first: other
    machines and cgroups can keep the planted ones (idle, so last) out of its rows.  Ordered
    by path, a machine's cgroups follow its own row, where selecting it put the table's
    cursor: one row down, and the focused table's view follows.  The planted ones are rows
    from the second refresh on (systemd-cgtop's rule: no task, no memory and no CPU figure
    yet is no row), the one that gives the machine's row its %CPU: wait for that first."""
    tmux.keys("Tab", "p")  # from the machine list to the CPU table (the view follows its cursor); by path
    shown = escape(cgroup)
    row_with_cpu = re.compile(r"(/\S*) +\S+ +\d+\.\d ")  # a row's path (maybe ellipsized), tasks, %CPU
    deadline = time.monotonic() + 30
    while True:
        screen = tmux.screen()
        if any(shown.endswith(m[1].rpartition("…")[2]) for m in row_with_cpu.finditer(screen)):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the CPU figure of {shown} never appeared; the screen was:\n{screen}")
        time.sleep(0.1)
    if text not in screen:
        tmux.keys("Down")
    return tmux.wait(text, timeout=30)


def _panel_rows(screen: str) -> list[tuple[int, str]]:
    """Where each panel's title sits: the layout, as the user sees it."""
    titles = ("Machines", "CPU (cgtop", "Control groups", "Journal:")
    return [(i, t) for i, line in enumerate(screen.splitlines()) for t in titles if t in line]


def _assert_untouched(tmux: HostileTerminal, before: dict[str, str], layout_before: list, name: str) -> str:
    """The terminal as it was, the dashboard as it was, no action asked for, the machine running."""
    time.sleep(3)  # several refreshes with the guest's text on screen
    screen = tmux.screen()
    after = tmux.state()
    assert after == before, f"the terminal changed:\n{before}\n{after}"
    assert after["buffers"] == "" and "TITLE" not in after["title"] and "PASSTHROUGH" not in after["title"]
    assert _panel_rows(screen) == layout_before, screen
    assert "refresh 1 s" in screen and f"selected: {name}" in screen, screen  # no delay key, no reselection
    assert "to confirm" not in screen and "machine '" not in screen, screen  # no action was asked for
    assert st.supervisor_alive(st.machine_dir(name)), "the machine must still run"
    assert registry.lookup(name).state.state == "running"
    return screen


def _assert_clean(outputs: dict[str, subprocess.CompletedProcess]) -> None:
    for verb, r in outputs.items():
        assert r.returncode == 0, (verb, r.stderr)
        found = FORBIDDEN.search(r.stdout + r.stderr)
        assert found is None, f"{verb}: raw {found.group()!r} in its output"


def test_hostile_guest_text_reaches_no_terminal_raw(busybox_tree, machine_name):
    name = machine_name
    # What the guest controls in its tree: os-release (read by list, status and the machine list).
    osr = busybox_tree / "usr/lib/os-release"
    osr.write_bytes(b"NAME=\"evil\x1b]0;OS-TITLE\x07\"\nID=ev\x1b[>cil\nVERSION_ID=\"1\xc2\x9b6n\"\n"
                    b"PRETTY_NAME=\"[@click=app.quit]pretty\xe2\x80\xae \x1b]52;c;?\x07\"\n")
    (busybox_tree / "root/hostile").write_bytes(PAYLOAD)
    client.spawn(ContainerSpec(directory=busybox_tree, machine=name, boot=True), detach=True, notice=None)
    tmux = HostileTerminal(name)
    planted: list[Path] = []
    try:
        m = registry.lookup(name)
        assert m.leader and m.state and m.state.cgroup
        # Planted before the dashboard starts (the rows it shows from its first snapshot on), so
        # that its CPU table can be walked to them (_show_own_cgroups) while it runs.
        planted = _plant_cgroups(m.state.cgroup)
        assert planted, "the machine's cgroup was not found in any hierarchy"
        tmux.start([*NSDASH], 160, 48)
        tmux.wait("refresh 1 s")
        tmux.select(name)  # the host may have other machines: its journal, its row
        screen = tmux.wait(f"Journal: {name}")  # every panel titled: the layout as it stays
        before = tmux.state()
        # The guest's os-release and cgroup names were on screen already: the terminal as the test made it.
        assert before["window"] == "nsdash" and before["size"] == "160x48" and before["dead"] == "0", before
        assert before["buffers"] == "" and "TITLE" not in before["title"], before
        layout_before = _panel_rows(screen)
        _show_own_cgroups(tmux, m.state.cgroup, "altscr\\x1b[?1049l")

        # Inside: the console (hence the console log and the journal pane) and the hostname.
        script = "cat /root/hostile > /dev/console; hostname \"$(printf 'h\\033]2;HOST-TITLE\\007')\""
        subprocess.run(["nsenter", "-t", str(m.leader), "-m", "-u", "-p", "--", "/bin/sh", "-c", script],
                       check=True, timeout=10)

        # The dashboard shows the guest's text: the console lines in the journal pane (the console
        # source drops escape sequences), the cgroup names in the CPU table and os-release's ID in
        # the machine list, escaped.
        tmux.wait("hostile-keys", timeout=30)
        tmux.wait("ev\\x1b[>cil", timeout=30)
        _assert_untouched(tmux, before, layout_before, name)

        # The CLI: nothing raw in any output (pipes here; a terminal gets the same text).
        outputs = {
            "list": run_nsdash("list", text=False),
            "status": run_nsdash("status", name, "-n", "40", text=False),
            "cgls": run_nsdash("cgls", "-a", "-l", "-M", name, text=False),
            "cgtop": run_nsdash("cgtop", "-b", "-n", "2", "-d", "0.3", "-M", name, text=False),
            "journal": run_nsdash("journal", "-M", name, "-n", "60", text=False),
            "ps": run_nsdash("ps", "-M", name, text=False),
        }
        _assert_clean(outputs)
        assert b"\\x1b]52;c;?\\x07" in outputs["status"].stdout  # the console tail, shown escaped
        assert b"[@click=app.quit]pretty\\u202e" in outputs["status"].stdout  # os-release, escaped
        assert b"\\x1b[>c" in outputs["cgls"].stdout and b"\\x1b[>c" in outputs["cgtop"].stdout  # cgroup names
        assert b"ev\\x1b[>cil" in outputs["list"].stdout
    finally:
        tmux.kill()
        for path in reversed(planted):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(NsdashError, OSError):
            client.terminate(name, wait=True)


HOSTILE_UNIT = """\
[Unit]
Description=evil\x1b]0;UNIT-TITLE\x07 \x1b[>c \x1b]52;c;?\x07 \u202e [@click=app.quit]q

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
"""


def test_hostile_journal_and_unit_description_in_a_debian_guest(debian_cache, machine_name):
    """An unprivileged user's `logger` line (the journal pane) and a unit's Description (the units screen)."""
    from nsdash.inside import units
    from tests.integration.test_inside_systemctl import boot, install_units, power_off

    name = machine_name
    target = boot(debian_cache, name, "-x")
    tmux = HostileTerminal(name)
    try:
        install_units(target, **{"nsdash-hostile.service": HOSTILE_UNIT})
        units.run(target, lambda sd: sd.job("start", "nsdash-hostile.service"))
        tmux.start([*NSDASH], 160, 48)
        tmux.wait("refresh 1 s")
        tmux.select(name)
        tmux.wait(f"Journal: {name}")
        before = tmux.state()
        layout_before = _panel_rows(tmux.screen())
        line = "logged\x1b]52;c;?\x07\x1b[>c\x1b]0;LOG-TITLE\x07\u009b6n\u202e[@click=app.quit]q"
        script = f"setpriv --reuid=65534 --regid=65534 --clear-groups logger -t hostile \"$(printf '{line}')\""
        leader = registry.lookup(name).leader
        subprocess.run(["nsenter", "-t", str(leader), "-m", "-u", "-p", "-i", "-n", "--", "/bin/sh", "-c", script],
                       check=True, timeout=10)
        tmux.wait("hostile: logged\\x1b]52;c;?\\x07\\x1b[>c", timeout=30)
        _assert_untouched(tmux, before, layout_before, name)

        tmux.keys("u")  # the selected machine's units, filtered to the hostile one
        tmux.wait("units shown")
        time.sleep(1)
        tmux.keys("/")
        time.sleep(0.5)
        tmux.keys("-l", "nsdash-hostile")
        tmux.wait(": 1 units shown")
        tmux.keys("Enter")
        tmux.wait("evil\\x1b]0;UNIT-TITLE", timeout=30)
        time.sleep(2)
        after = tmux.state()
        assert after == before, f"the terminal changed:\n{before}\n{after}"
        assert "to confirm" not in tmux.screen()
        tmux.keys("Escape")
        tmux.wait("Control groups")

        outputs = {
            "journal": run_nsdash("journal", "-M", name, "-n", "200", text=False),
            "list-units": run_nsdash("systemctl", "-M", name, "list-units", text=False),
            "status": run_nsdash("systemctl", "-M", name, "status", "nsdash-hostile.service", text=False),
        }
        _assert_clean({k: v for k, v in outputs.items() if k != "status"})
        assert FORBIDDEN.search(outputs["status"].stdout + outputs["status"].stderr) is None
        assert b"hostile[" in outputs["journal"].stdout  # journalctl's "[N blob data]" for a message with controls
        assert b"evil\\x1b]0;UNIT-TITLE\\x07" in outputs["list-units"].stdout
        assert b"evil\\x1b]0;UNIT-TITLE\\x07" in outputs["status"].stdout
    finally:
        tmux.kill()
        power_off(name)


def test_a_guest_process_command_line_is_shown_escaped(busybox_tree, machine_name, detached):
    """A process inside whose argv holds a title, a clipboard read and a C1 CSI: `ps -M`, `cgls`
    and `status` (its process tree) show it escaped, nothing raw."""
    hostile = "x\x1b]0;PS-TITLE\x07\x1b]52;c;?\x07\u009b6n\u202e"
    # `; true` keeps the shell (BusyBox sh execs a last simple command): its argv stays in /proc.
    detached("-D", str(busybox_tree), "/bin/sh", "-c", "sleep 600; true", hostile)
    shown = "x\\x1b]0;PS-TITLE\\x07\\x1b]52;c;?\\x07\\x9b6n\\u202e"
    outputs = {}
    for verb, args in (("ps", ["ps", "-M", machine_name]), ("cgls", ["cgls", "-l", "-M", machine_name]),
                       ("cgls -a", ["cgls", "-a"]), ("status", ["status", machine_name])):
        outputs[verb] = r = run_nsdash(*args, text=False)
        if verb != "cgls -a":  # the whole host's tree: other machines' processes come and go meanwhile
            assert shown.encode() in r.stdout, (verb, r.stdout.decode(errors="replace"))
    _assert_clean(outputs)
