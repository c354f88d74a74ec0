"""The layers' one-way arrows, checked in fresh interpreters."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADLESS = ["nsdash.launcher", "nsdash.machines", "nsdash.monitor", "nsdash.journal",
            "nsdash.system", "nsdash.cli", "nsdash.inside", "nsdash.remote"]


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, importlib; importlib.import_module({module!r}); print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_packages_do_not_import_textual(module):
    loaded = _modules_after_import(module)
    assert not {m for m in loaded if m == "textual" or m.startswith("textual.")}


def test_no_module_outside_tui_imports_textual():
    offenders = []
    for path in (REPO / "nsdash").rglob("*.py"):
        if "tui" in path.relative_to(REPO / "nsdash").parts:
            continue
        text = path.read_text()
        if "import textual" in text or "from textual" in text:
            offenders.append(str(path))
    assert offenders == []


def test_spawn_path_imports_no_ui():
    loaded = _modules_after_import("nsdash.cli.spawn")
    heavy = {m for m in loaded if m.split(".")[0] in {"textual", "rich", "pyte", "systemd"}}
    assert heavy == set()


def test_child_side_code_is_standard_library_only():
    """The code that runs after clone imports only the standard library and itself."""
    loaded = _modules_after_import("nsdash.launcher.child") - _modules_after_import("sys")  # minus site's own
    third_party = {m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names) - {"nsdash", "__main__"}
    nsdash_mods = {m for m in loaded if m.startswith("nsdash.")}
    assert third_party == set()
    assert nsdash_mods <= {"nsdash.launcher.child", "nsdash.launcher", "nsdash.system",
                           "nsdash.system.syscalls", "nsdash.errors", "nsdash.launcher.sandbox"}


# Each package may import only the packages below it (DESIGN.md's layers).
LAYER_BELOW = {
    "system": set(),
    "launcher": {"system"},
    "machines": {"launcher", "system"},
    "monitor": {"machines", "launcher", "system"},
    "journal": {"machines", "launcher", "system", "monitor"},
    "inside": {"machines", "launcher", "system", "journal", "monitor"},
    # -H: runs nsdash's own verbs on the far side as processes, so it needs only the sanitiser
    "remote": {"system"},
}


def _imported_packages(package: str) -> set[str]:
    import ast

    found: set[str] = set()
    for path in (REPO / "nsdash" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "nsdash" and len(parts) > 1 and parts[1] not in {"errors", package}:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(LAYER_BELOW))
def test_packages_import_only_the_layers_below(package):
    assert _imported_packages(package) - LAYER_BELOW[package] == set()


def test_one_system_call_layer():
    """Only nsdash/system/syscalls.py loads libc, and system/birthtime.py (statx through _ctypes for
    image-status and show-image: the ctypes package that syscalls imports was a third of their
    run): every other module calls their wrappers."""
    loaders = sorted(str(p.relative_to(REPO)) for p in (REPO / "nsdash").rglob("*.py")
                     if any(call in p.read_text() for call in ("CDLL(", "PyDLL(", "dlopen(")))
    assert loaders == ["nsdash/system/birthtime.py", "nsdash/system/syscalls.py"]
