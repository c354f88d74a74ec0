"""The style files: the dashboard's first frame parses only its own (styles/nsdash.tcss); the
machine view's and the forms' rules are added when such a screen first opens, and what was
parsed before is not parsed again then (nsdash.tui.stylefiles, issue 16)."""

from __future__ import annotations

from textual.css import stylesheet as textual_stylesheet
from tuikit import feed_sample, sample_app, wait_for_screen

from nsdash.tui import stylefiles
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.screens.machine import MachineScreen


def selectors(app) -> set[str]:
    return {rule.selectors for rule in app.stylesheet.rules}


def file_sources(app) -> set[str]:
    return {path for path, class_var in app.stylesheet.source if path.endswith(".tcss") and not class_var}


async def test_other_screens_rules_are_parsed_when_their_screen_first_opens(monkeypatch):
    parsed: list[tuple[str, str]] = []  # the sources Textual's parser read, as (path, class variable)
    real_parse = textual_stylesheet.parse

    def counting_parse(scope, css, read_from, **kw):
        parsed.append(read_from)
        return real_parse(scope, css, read_from, **kw)

    monkeypatch.setattr(textual_stylesheet, "parse", counting_parse)
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        # The first frame: the dashboard's file only; no machine view or form rule parsed.
        assert file_sources(app) == {str(stylefiles.path())}
        assert "#machine-body" not in selectors(app) and "#confirm-box" not in selectors(app)
        main = (str(stylefiles.path()), "")
        assert parsed.count(main) == 1

        parsed.clear()
        app.push_screen(MachineScreen("demo-debian"))
        await wait_for_screen(pilot, MachineScreen)
        assert str(stylefiles.path("machine")) in file_sources(app)
        assert "#machine-body" in selectors(app)
        # its rules in force: machine.tcss gives the metrics panel 5 rows
        metrics = app.screen.query_one("#machine-metrics")
        assert metrics.styles.height is not None and metrics.styles.height.value == 5
        # Only the new sources were parsed: nothing of the dashboard's again (Textual's
        # Screen.CSS_PATH would have re-parsed every source, nsdash.tcss included).
        assert (str(stylefiles.path("machine")), "") in parsed
        assert main not in parsed
        assert not any(class_var.startswith(("App.", "Screen.", "DataTable.")) for _path, class_var in parsed)

        parsed.clear()
        app.push_screen(ConfirmScreen("Power off machine 'demo-debian'?", "Power off", typed="demo-debian"))
        await wait_for_screen(pilot, ConfirmScreen)
        assert "#confirm-box" in selectors(app)
        box = app.screen.query_one("#confirm-box")
        assert box.styles.width is not None and box.styles.width.value == 50  # forms.tcss
        assert main not in parsed and (str(stylefiles.path("machine")), "") not in parsed

        # Opened again: nothing added, nothing parsed.
        app.pop_screen()
        await wait_for_screen(pilot, MachineScreen)
        sources = dict(app.stylesheet.source)
        parsed.clear()
        app.push_screen(ConfirmScreen("Reboot machine 'demo-debian'?", "Reboot", typed="demo-debian"))
        await wait_for_screen(pilot, ConfirmScreen)
        assert dict(app.stylesheet.source) == sources
        assert (str(stylefiles.path("forms")), "") not in parsed


def test_a_screen_made_outside_a_running_app_loads_nothing():
    screen = ConfirmScreen("Really?")  # no active app: nothing to add to, and no error
    assert screen.question == "Really?"


def test_every_style_file_is_one_the_package_ships():
    # pyproject's force-include ships the whole styles/ folder; each name used resolves to a file.
    for name in ("nsdash", "machine", "forms"):
        assert stylefiles.path(name).is_file(), name
