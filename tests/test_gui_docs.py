"""The user guide and the README agree with the app: shortcuts, pictures, system packages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "USER_GUIDE.md"


def test_the_guide_lists_every_shortcut():
    from usclean_gui.app.shortcuts import SHORTCUTS

    text = GUIDE.read_text(encoding="utf-8")
    for keys, what in SHORTCUTS:
        assert "| %s | %s |" % (keys, what) in text, keys


def test_every_picture_the_guide_links_exists():
    text = GUIDE.read_text(encoding="utf-8")
    links = re.findall(r"\]\((images/[^)]+\.png)\)", text)
    assert len(links) >= 10
    for link in links:
        assert (GUIDE.parent / link).is_file(), link
    assert "docs/images/screenshot.png" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_every_package_the_app_checks_for():
    from usclean_gui.app.platform_check import X11_LIBRARIES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("### System packages (Linux)"):]
    for package in set(X11_LIBRARIES.values()):
        assert re.search(r"\b%s\b" % re.escape(package), block), package
