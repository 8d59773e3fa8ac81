"""GUI: the pipeline panel's strength slider and pane check boxes drive a real ClipSession."""
from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from usclean_gui.app import export  # noqa: E402
from usclean_gui.app.model import ClipSession, EngineSettings, RoiShape, measure  # noqa: E402
from usclean_gui.app.pipeline_panel import PipelinePanel  # noqa: E402
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


def test_strength_slider_blends_what_is_shown(qtbot, session):
    panel = PipelinePanel()
    qtbot.addWidget(panel)
    panel.set_session(session)
    assert panel.isEnabled() and session.strength == 1.0
    full = session.despeckled_frame(1).copy()
    with qtbot.waitSignal(panel.strength_changed) as sig:
        panel.slider.setValue(40)
    assert sig.args == [0.4] and session.strength == pytest.approx(0.4) and panel.slider_label.text() == "40 %"
    m = session.paste_mask(1)
    orig = session.original_frame(1)
    shown = session.despeckled_frame(1)
    np.testing.assert_allclose(shown[m], orig[m] + 0.4 * (full[m] - orig[m]), atol=1e-5)
    assert np.array_equal(shown[~m], orig[~m])
    np.testing.assert_allclose(session.std_frame(1)[m], 0.08, atol=1e-6)
    panel.slider.setValue(0)
    assert np.array_equal(session.despeckled_frame(1), orig)


def test_pane_boxes_toggle_panes(qtbot, session):
    panel = PipelinePanel()
    qtbot.addWidget(panel)
    panel.set_session(session)
    assert len(panel.pane_checks) == 2 and all(b.isChecked() for b in panel.pane_checks)
    assert "0.4 x 0.5 mm" in panel.pane_checks[1].text() and "tissue region 2" in panel.pane_checks[1].text()
    with qtbot.waitSignal(panel.pane_toggled) as sig:
        panel.pane_checks[1].setChecked(False)
    assert sig.args == [1, False] and not session.clip.layout.panes[1].enabled
    assert session.means == {} and session.box == DUAL[0]  # results cleared, the box is the left pane's
    x0, y0, x1, y1 = DUAL[1]
    assert not session.clip.process_mask(0)[y0:y1, x0:x1].any()
    panel.set_session(None)
    assert not panel.isEnabled() and panel.pane_checks == []


def test_exports_record_strength(session, tmp_path):
    session.set_strength(0.25)
    out = export.derived_dicom(session, tmp_path / "d.dcm")
    assert "strength=0.25" in pydicom.dcmread(out).DerivationDescription
    t, b = RoiShape("target", "rect", (40, 40, 10, 10)), RoiShape("background", "rect", (200, 40, 10, 10))
    row = measure(session.original_frame(0), session.despeckled_frame(0), t, b, session.spacing_mm)
    csv_path = export.measurements_csv([row], {"target": t, "background": b}, session, tmp_path / "m.csv")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["strength"] for r in rows] == ["", "0.25"]  # recorded on the despeckled row
