"""The machine view's live limits: shown beside usage, changed through a form and a confirmation."""

from __future__ import annotations

from textual.widgets import Input, Label, Static
from tuikit import confirm_by_name, feed_sample, sample_app, wait_for, wait_for_screen

from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.limits import LimitsScreen, changed_assignments
from nsdash.tui.screens.machine import MachineScreen


class LimitActions:
    """The launcher's limit calls, recorded; the limits in force change as a real host's would."""

    def __init__(self) -> None:
        self.in_force = {"MemoryMax": str(64 << 20), "TasksMax": "77"}
        self.calls: list[tuple] = []

    def limits(self, name, cgroup):
        self.calls.append(("limits", name, cgroup))
        return dict(self.in_force)

    def set_limits(self, name, cgroup, assignments):
        self.calls.append(("set_limits", name, cgroup, list(assignments)))
        for a in assignments:
            key, _, value = a.partition("=")
            self.in_force[key] = {"32M": str(32 << 20)}.get(value, value)


def test_only_changed_fields_become_assignments():
    before = {"MemoryMax": "100", "TasksMax": "77"}
    assert changed_assignments(before, {"MemoryMax": "100", "TasksMax": "77", "CPUQuota": ""}) == []
    assert changed_assignments(before, {"MemoryMax": "2G", "TasksMax": "", "CPUQuota": "50%"}) == [
        "CPUQuota=50%", "MemoryMax=2G", "TasksMax=infinity"]


async def test_limits_show_beside_usage_and_change_after_confirmation():
    actions = LimitActions()
    app = sample_app(actions=actions)
    async with app.run_test(size=(140, 40)) as pilot:
        await feed_sample(app, pilot)
        app.push_screen(MachineScreen("demo-debian"))
        await pilot.pause()
        app._apply()
        screen = app.screen
        assert isinstance(screen, MachineScreen)
        await wait_for(pilot, lambda: screen.limits.get("TasksMax") == "77", what="the limits in force")
        app._apply()
        await pilot.pause()
        assert str(screen.query_one("#value-memory", Label).render()).endswith("/ 64.0M")
        assert "tasks ≤ 77" in str(screen.query_one("#machine-info", Static).render())

        await pilot.press("l")
        await wait_for_screen(pilot, LimitsScreen, what="the limits form")
        form = app.screen
        memory = form.query_one("#limits-MemoryMax", Input)
        assert memory.value == str(64 << 20)  # prefilled with what is in force
        memory.value = "lots"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, LimitsScreen)  # a bad value stays in the form, explained
        assert "Failed to parse MemoryMax=" in str(form.query_one("#limits-error", Static).render())
        memory.value = "32M"
        await pilot.press("ctrl+s")
        await wait_for_screen(pilot, ConfirmScreen, what="the confirmation")
        assert "MemoryMax=32M" in str(app.screen.query_one("#confirm-question", Static).render())
        await pilot.press("y")
        assert not any(c[0] == "set_limits" for c in actions.calls)  # no letter confirms
        await confirm_by_name(app, pilot, "demo-debian")
        await wait_for(pilot, lambda: any(c[0] == "set_limits" for c in actions.calls), what="the change")
        cgroup = r"/machine.slice/machine-demo\x2ddebian.scope"
        assert ("set_limits", "demo-debian", cgroup, ["MemoryMax=32M"]) in actions.calls
        await wait_for(pilot, lambda: screen.limits.get("MemoryMax") == str(32 << 20), what="the new limit")
