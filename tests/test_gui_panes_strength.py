"""GUI: the region box's pane check boxes and the strength slider drive a real ClipSession; exports
record the strength."""
from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from usclean_gui.app import export  # noqa: E402
from usclean_gui.app.viewer_state import ClipSession, EngineSettings, RoiShape, measure  # noqa: E402
from usclean_gui.dicomio import open_image  # noqa: E402

from test_regions import DUAL, _file, _screen  # noqa: E402


@pytest.fixture
def session(dicom_factory):
    path = _file(dicom_factory, "dual.dcm", _screen(DUAL), DUAL, [(0.2, 0.3), (0.4, 0.5)])
    s = ClipSession(open_image(path), str(path))
    for i in range(s.n_frames):  # a "despeckled" result: the box at 0.5 everywhere
        x0, y0, x1, y1 = s.box
        s.store(i, np.full((y1 - y0, x1 - x0), 0.5, np.float32), np.full((y1 - y0, x1 - x0), 0.2, np.float32))
    s.settings = EngineSettings(model="tiny")
    return s


def test_strength_slider_sets_what_exports_record(window, session):
    window.set_session(session)
    window.panes.strength_slider.setValue(40)
    assert session.strength == pytest.approx(0.4) and window.panes.strength == pytest.approx(0.4)
    x0, y0, x1, y1 = session.box
    grey = session.clip.gray_frame(1)[y0:y1, x0:x1].astype(np.float32)
    grey = (grey / np.float32(np.iinfo(grey.dtype).max)
            if np.issubdtype(session.clip.gray_frame(1).dtype, np.integer) else grey)
    # what the derived series holds: the box blended by strength
    np.testing.assert_allclose(session.shown(1), grey + 0.4 * (session.means[1] - grey), atol=1e-5)
    window.panes.strength_slider.setValue(0)
    assert session.strength == 0.0


def test_pane_boxes_toggle_panes(window, qtbot, session):
    window.set_session(session)
    box = window.region_box
    assert len(box.pane_checks) == 2 and all(b.isChecked() for b in box.pane_checks)
    assert "0.4 × 0.5 mm" in box.pane_checks[1].toolTip() and "tissue region 2" in box.pane_checks[1].text()
    with qtbot.waitSignal(box.pane_toggled) as sig:
        box.pane_checks[1].setChecked(False)
    assert sig.args == [1, False] and not session.clip.layout.panes[1].enabled
    assert session.means == {} and session.box == DUAL[0]  # results cleared, the box is the left pane's
    x0, y0, x1, y1 = DUAL[1]
    assert not session.clip.process_mask(0)[y0:y1, x0:x1].any()
    assert len(box.pane_checks) == 2 and not box.pane_checks[1].isChecked()  # redrawn, still listed


def test_exports_record_strength(session, tmp_path):
    session.set_strength(0.25)
    out = export.derived_dicom(session, tmp_path / "d.dcm")
    assert "strength=0.25" in pydicom.dcmread(out).DerivationDescription
    t, b = RoiShape("target", "rect", (40, 40, 10, 10)), RoiShape("background", "rect", (200, 40, 10, 10))
    row = measure(session.original_frame(0), session.despeckled_frame(0), t, b, session.spacing_mm)
    csv_path = export.measurements_csv([row], {"target": t, "background": b}, session, tmp_path / "m.csv")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["strength"] for r in rows] == ["", "0.25"]  # recorded on the despeckled row
