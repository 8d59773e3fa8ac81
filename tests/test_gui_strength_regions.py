"""GUI (issue 17, GUI side): the despeckling strength slider and the B-mode regions with a toggle each."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from engine.testing import tiny_ensemble  # noqa: E402
from usclean_gui.app.panes import to_display  # noqa: E402
from usclean_gui.app.viewer_state import blend, bmode_regions  # noqa: E402


@pytest.fixture
def window(make_window):
    return make_window(model="tiny", engine_loader=lambda name: tiny_ensemble(seed=0))


def test_strength_mixes_despeckled_and_original_in_display_grey_levels(window, qtbot, dicom_factory):
    path = dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=2, colour=True))
    assert window.open_file(path)
    with qtbot.waitSignal(window.despeckle_ended, timeout=60000):
        window.despeckle()
    s = window.session
    orig, desp = s.original_frame(0), s.despeckled_frame(0)
    full = window.panes.image(1).copy()
    assert np.array_equal(full, to_display(desp))
    window.panes.strength_slider.setValue(40)
    assert window.panes.strength == pytest.approx(0.4) and window.panes.strength_label.text() == "Strength 40 %"
    assert np.array_equal(window.panes.image(1), to_display(0.4 * desp + 0.6 * orig))
    mask = s.clip.process_mask(0)
    assert np.array_equal(window.panes.image(1)[~mask], to_display(orig)[~mask])  # text and colour untouched
    window.panes.set_strength(0.0)
    assert np.array_equal(window.panes.image(1), to_display(orig))
    assert blend(orig, desp, 1.0) is desp


def test_each_region_has_an_outline_and_a_toggle(window, dicom_factory):
    path = dicom_factory.dicom("r.dcm", dicom_factory.frames(n_frames=2))
    assert window.open_file(path)
    box = window.region_box
    assert bmode_regions(window.session.clip) == [dicom_factory.box]
    assert len(box.toggles) == len(box.items) == 1 and "despeckled" in box.toggles[0].text()
    assert box.items[0].getViewBox() is window.panes.views[0] and box.items[0].isVisible()
    box.toggles[0].setChecked(False)
    assert not box.items[0].isVisible()

    class TwoRegions:  # what a clip listing several regions will look like
        bmode_regions = [(0, 0, 10, 10), (20, 20, 40, 30)]

    assert bmode_regions(TwoRegions()) == [(0, 0, 10, 10), (20, 20, 40, 30)]


def test_the_side_panel_fits_its_width_after_a_file_opens(window, qtbot):
    """The panel has no horizontal scroll bar: a check box does not wrap, so a long one (the region's and
    the pane's coordinates in its text) pushed the panel's right edge, the Cancel button and the combo
    boxes' arrows out of sight.  The coordinates are in the tooltips."""
    from pathlib import Path

    assert window.open_file(Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo_clip.dcm")
    panel = window.side_panel
    qtbot.wait(100)  # the panel's layout takes the new check boxes in
    assert window.region_box.toggles and window.region_box.pane_checks
    assert "x " in window.region_box.pane_checks[0].toolTip()
    assert panel.widget().minimumSizeHint().width() <= panel.viewport().width()  # 492 > 356 px before
