"""The wheel carries the styles/ folder; the layout matches the design card."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_top_level_layout():
    for name in ("nsdash", "styles", "tests", "pyproject.toml", "README.md", "screenshots"):
        assert (REPO / name).exists(), name
    for pkg in ("launcher", "machines", "monitor", "journal", "tui", "system"):
        assert (REPO / "nsdash" / pkg / "__init__.py").is_file(), pkg


def test_wheel_contains_styles(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("nsdash-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tcss = sorted(p.name for p in (REPO / "styles").glob("*.tcss"))
    assert tcss, "styles/ holds no .tcss file"
    for name in tcss:
        assert f"nsdash/styles/{name}" in names
