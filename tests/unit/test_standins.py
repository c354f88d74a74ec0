"""nsdash.tui.standins: Textual's app module loaded without uuid, mimetypes, platformdirs,
textual.types and rich.pretty (issue 16), each real again when used.  In a fresh interpreter: this one has them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys
from nsdash.tui import standins
with standins.deferred() as placed:
    import textual.app
    import textual.notifications
    import textual.widgets._rich_log
print(sorted(placed))
print(sorted(n for n in ("uuid", "platform", "mimetypes", "platformdirs", "textual.types", "rich.pretty")
             if n in sys.modules))
# Textual's own uses, after the block: the real modules behind them
key = textual.notifications.Notification("hello").identity  # uuid4, through the function held
print(len(key), "uuid" in sys.modules and not isinstance(sys.modules["uuid"], standins.StandIn))
print(textual.app.mimetypes.guess_type("a.txt")[0])  # the stand-in textual.app kept: the real one's attribute
print(str(textual.app.user_downloads_path()).startswith("/"))
import textual.types, uuid, mimetypes
print(type(textual.types).__name__, hasattr(textual.types, "SelectType"), len(textual.app.uuid.uuid4().hex),
      type(mimetypes).__name__, type(uuid).__name__)
pretty = textual.widgets._rich_log.Pretty({"a": 1})  # what RichLog.write makes of an object
print(type(pretty).__module__, type(sys.modules["rich.pretty"]).__name__)
"""


def test_textual_app_loads_without_them_and_each_is_real_when_used():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "['mimetypes', 'platformdirs', 'rich.pretty', 'textual.types', 'uuid']",
        "[]",  # none of them loaded by Textual's import
        "36 True",
        "text/plain",
        "True",
        "module True 32 module module",
        "rich.pretty module",
    ], out.stderr[-2000:]


def test_nothing_is_stood_in_for_a_module_already_loaded():
    import uuid

    from nsdash.tui import standins

    with standins.deferred() as placed:
        assert "uuid" not in placed and sys.modules["uuid"] is uuid
    assert sys.modules["uuid"] is uuid


def test_a_stand_in_gives_the_real_module_and_has_no_dunders_of_its_own():
    from nsdash.tui import standins

    module = standins.StandIn("json")
    assert module.dumps([1]) == "[1]"  # json loaded (or taken) on first use
    assert not hasattr(module, "__path__")  # the import system's question: answered, nothing loaded for it



# A Textual that moved IgnoreReturnCallbackType out of its private textual._types into
# textual.types itself: both modules loaded from edited copies of this Textual's own.
_MOVED = """
import importlib.util, sys
class Moved:
    def find_spec(self, name, path=None, target=None):
        if name in ("textual._types", "textual.types"):
            return importlib.util.spec_from_file_location(name, f"{sys.argv[1]}/{name[8:]}.py")
        return None
sys.meta_path.insert(0, Moved())
import textual._types
assert not hasattr(textual._types, "IgnoreReturnCallbackType")
from nsdash.tui import standins
with standins.deferred() as placed:
    import textual.app
print(sorted(placed))
import textual.types
print(type(textual.types).__name__, hasattr(textual.types, "SelectType"), textual.types.IgnoreReturnCallbackType)
"""


def test_a_textual_without_the_private_name_loads_the_real_types_module(tmp_path):
    import textual._types
    import textual.types

    private = Path(textual._types.__file__).read_text()
    line = next(line for line in private.splitlines() if line.startswith("IgnoreReturnCallbackType ="))
    (tmp_path / "_types.py").write_text(private.replace(line, ""))
    public = Path(textual.types.__file__).read_text()
    assert "    IgnoreReturnCallbackType,\n" in public
    (tmp_path / "types.py").write_text(public.replace("    IgnoreReturnCallbackType,\n", "") +
                                      "\nfrom typing import Any, Awaitable, Callable, Union\n" + line + "\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    out = subprocess.run([sys.executable, "-c", _MOVED, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    placed, types = out.stdout.splitlines()
    assert placed == "['mimetypes', 'platformdirs', 'rich.pretty', 'uuid']"  # no stand-in for textual.types
    assert types.startswith("module True typing.Union[")  # the real one, with the name where it moved


def test_a_missing_private_module_is_no_name():
    from nsdash.tui import standins

    assert standins._private_name("textual._no_such_module", "IgnoreReturnCallbackType") is None
    assert standins._private_name("textual._types", "NoSuchName") is None
