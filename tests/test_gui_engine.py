"""GUI: despeckling in the background (tiny real ensemble): auto start, the frame on screen first,
previews and ensemble, scrubbing, cancel, close, errors, exports, the --screenshot mode."""
from __future__ import annotations

import gc

import cv2
import numpy as np
import pydicom
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QElapsedTimer, QEvent, QSettings, QThreadPool, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.testing import tiny_ensemble  # noqa: E402
from usclean_gui.app.engine_work import model_info  # noqa: E402
from usclean_gui.app.main_window import MainWindow  # noqa: E402
from usclean_gui.dicomio import open_image  # noqa: E402


def _loader(name: str):
    if name == "broken":
        raise ValueError("model 'broken': weights do not match the model card's SHA-256")
    return tiny_ensemble(seed=0, preview=name == "tiny-preview")


@pytest.fixture
def window(make_window):
    return make_window(model="tiny", engine_loader=_loader)


class StallMeter:
    """A 10 ms QTimer recording its ticks and the longest gap between them (event-loop stalls)."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.clock.start()
        self.last = 0
        self.worst = 0
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.worst = max(self.worst, now - self.last)
        self.last = now
        self.ticks += 1

    def stop(self) -> int:
        self.timer.stop()
        return self.worst


def _clip(dicom_factory, n=6, colour=True, name="clip.dcm"):
    return dicom_factory.dicom(name, dicom_factory.frames(n_frames=n, colour=colour), spacing_mm=(0.25, 0.3))


def _despeckle_all(window, qtbot):
    with qtbot.waitSignal(window.despeckle_ended, timeout=60000) as blocker:
        assert window.despeckle()
    assert blocker.args == [True]


def test_opening_starts_despeckling_frame_on_screen_first(make_window, qtbot, dicom_factory):
    win = make_window(model="tiny", engine_loader=_loader, auto_despeckle=True)
    order: list[tuple[str, int]] = []
    win.frame_stored.connect(lambda r: order.append((r.kind, r.index)))
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    meter = StallMeter()
    with qtbot.waitSignal(win.despeckle_ended, timeout=60000):
        assert win.open_file(_clip(dicom_factory, n=6))  # nothing else: it starts by itself
        assert win.engine_panel.cancel_button.isEnabled()
    worst = meter.stop()
    print("worst event-loop stall during the run: %d ms over %d ticks" % (worst, meter.ticks))
    assert meter.ticks > 0  # the event loop kept running while the engine worked
    assert order[:2] == [("preview", 0), ("ensemble", 0)]  # the frame on screen: preview, then ensemble
    assert [i for k, i in order if k == "ensemble"] == list(range(6))  # then outwards
    s = win.session
    assert sorted(s.means) == list(range(6)) and s.means[0].shape == (96, 120)  # the B-mode box only
    assert win.engine_panel.progress.value() == 1000
    assert win.engine_panel.eta_label.text().startswith("6 / 6 frames: ensemble")
    assert "2 members" in win.engine_panel.model_info.text() and win.engine_panel.members_spin.maximum() == 2
    assert win.panes.marker_text(1) == "ensemble · 2 members"
    for k in range(3):
        img = win.panes.image(k)
        finite = img[np.isfinite(img)]
        assert finite.size and float(np.ptp(finite)) > 0, "pane %d is constant" % k
    # only grey B-mode pixels changed; text, Doppler and calipers are untouched
    orig, desp = s.original_frame(0), s.despeckled_frame(0)
    mask = s.clip.process_mask(0)
    changed = np.any(orig != desp, axis=-1)
    assert changed[mask].mean() > 0.5 and not changed[~mask].any()
    assert not win.engine_panel.cancel_button.isEnabled()


def test_auto_despeckle_can_be_turned_off(window, dicom_factory, tmp_path):
    assert not window.engine_panel.auto_check.isChecked()
    assert window.open_file(_clip(dicom_factory, n=2))
    assert not window.runner.busy and not window.session.means
    assert window.panes.marker_text(1) == "not despeckled yet: original shown"
    assert np.array_equal(window.panes.image(1), window.panes.image(0))  # never an empty pane
    window.engine_panel.auto_check.setChecked(True)  # remembered in the settings
    again = MainWindow(settings=QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat))
    assert again.engine_panel.auto_check.isChecked()
    again.close()


def test_engine_panel_describes_the_clip_that_is_open(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=3))
    _despeckle_all(window, qtbot)
    assert window.engine_panel.eta_label.text().startswith("3 / 3 frames")
    assert window.open_file(dicom_factory.png("still.png", dicom_factory.frames(n_frames=1, colour=False)[0]))
    assert window.engine_panel.eta_label.text().startswith("0 / 1 frame: ensemble")
    assert window.engine_panel.progress.value() == 0
    _despeckle_all(window, qtbot)
    assert window.engine_panel.eta_label.text() == "1 / 1 frame: ensemble"


def test_scrubbing_moves_the_work_to_the_frame_looked_at(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=12, colour=False))
    window.engine_panel.steps_spin.setValue(20)  # slow enough to scrub while it runs
    order: list[tuple[str, int]] = []
    window.frame_stored.connect(lambda r: order.append((r.kind, r.index)))
    with qtbot.waitSignal(window.frame_stored, timeout=30000):
        window.despeckle()
    window.cine.set_frame(9)  # the user drags the slider to frame 9
    qtbot.waitUntil(lambda: 9 in window.session.means, timeout=60000)
    window.cancel()
    ens = [i for k, i in order if k == "ensemble"]
    assert ens.index(9) <= 3, order  # frame 9 came next (at most the frames already under way before it)
    assert ("preview", 9) in order and order.index(("preview", 9)) < order.index(("ensemble", 9))


def test_playing_shows_previews_ahead_and_reports_dropped_frames(window, qtbot, dicom_factory):
    assert window.open_file(dicom_factory.dicom("cine.dcm", dicom_factory.frames(n_frames=20, colour=False),
                                                frame_time_ms=40.0))
    kinds_seen: set[str] = set()
    window.cine.frame_changed.connect(lambda i: kinds_seen.add(window.panes.marker_text(1)))
    window.cine.play()
    window.despeckle()
    qtbot.waitUntil(lambda: len(window.session.previews) + len(window.session.means) >= 20, timeout=60000)
    window.cine.pause()
    window.cancel()
    print("dropped %d frames; %d shown before despeckling; %d previews, %d ensemble frames"
          % (window.cine.dropped, window.undespeckled_shown, len(window.session.previews), len(window.session.means)))
    assert "dropped" in window.dropped_label.text() and str(window.cine.dropped) in window.dropped_label.text()
    assert kinds_seen <= {"not despeckled yet: original shown", "preview · 1 member", "ensemble · 2 members"}
    assert "preview · 1 member" in kinds_seen or "ensemble · 2 members" in kinds_seen


def test_a_model_with_a_preview_network_previews_with_it(make_window, qtbot, dicom_factory):
    window = make_window(model="tiny-preview", engine_loader=_loader)
    assert window.open_file(_clip(dicom_factory, n=4, colour=False))
    window.engine_panel.steps_spin.setValue(20)  # the ensemble frame comes well after the preview
    seen: list[tuple[str, int, str]] = []
    window.frame_stored.connect(lambda r: seen.append((r.kind, r.index, window.panes.marker_text(1))))
    with qtbot.waitSignal(window.frame_stored, timeout=30000):
        window.despeckle()
    window.cancel()
    assert window.model_info.preview == "fast network"
    assert seen[0] == ("preview", 0, "preview · fast network")
    plain = _loader("tiny")
    assert not plain.has_preview and model_info(plain, "tiny").preview == "1 member"


def test_cancel_mid_run(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=8))
    window.engine_panel.steps_spin.setValue(60)
    with qtbot.waitSignal(window.frame_stored, timeout=30000):
        window.despeckle()
    with qtbot.waitSignal(window.despeckle_ended, timeout=5000) as blocker:
        window.engine_panel.cancel_button.click()
    assert blocker.args == [False]
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=5000)
    assert len(window.session.means) < 8 and not window.runner.busy
    assert "stopped" in window.engine_panel.eta_label.text()
    window.engine_panel.steps_spin.setValue(1)  # a new job runs (the results of 60 steps are dropped)
    window.cine.set_frame(7)
    _despeckle_all(window, qtbot)
    assert 7 in window.session.means


def test_closing_during_run_ends_every_worker(qtbot, tmp_path, dicom_factory):
    win = MainWindow(engine_loader=_loader, settings=QSettings(str(tmp_path / "g.ini"), QSettings.Format.IniFormat))
    win.message_sink = lambda level, text: None
    win.show()
    assert win.open_file(_clip(dicom_factory, n=8))
    win.engine_panel.steps_spin.setValue(80)
    with qtbot.waitSignal(win.frame_stored, timeout=30000):
        pass  # despeckling started on open
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0  # close waited for the workers to end


def test_engine_error_is_a_message_and_the_next_job_runs(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=2))
    shown = []
    window.message_sink = lambda level, text: shown.append((level, text))
    window.set_model("broken")
    with qtbot.waitSignal(window.despeckle_ended, timeout=10000):
        window.despeckle()
    assert shown and shown[-1][0] == "error" and "SHA-256" in shown[-1][1]
    window.set_model("tiny")
    _despeckle_all(window, qtbot)
    assert len(window.session.means) == 2


def test_model_is_a_list_of_the_shipped_models(window):
    combo = window.engine_panel.model_combo
    assert not combo.isEditable()
    items = [combo.itemText(i) for i in range(combo.count())]
    assert {"multiprobe", "l11-5v", "baseline"} <= set(items) and items[-1].startswith("Other")
    assert window.engine_settings().model == "tiny"


def test_result_is_the_engines_for_that_frame(window, qtbot, dicom_factory):
    """Each frame goes to the engine on its own with seed = settings seed + frame index, fitted on the clip's
    first frame."""
    src = _clip(dicom_factory, n=3)
    assert window.open_file(src)
    window.engine_panel.steps_spin.setValue(2)
    _despeckle_all(window, qtbot)
    s = window.session
    ens = tiny_ensemble(seed=0)
    for i in range(3):
        ((_, mean, std),) = ens.iter_despeckle(s.engine_input(i)[None], steps=2, seed=i, fit_frame=s.engine_input(0))
        np.testing.assert_allclose(s.means[i], mean, atol=1e-5)
        np.testing.assert_allclose(s.stds[i], std, atol=1e-5)


def test_settings_change_drops_results_and_restarts(make_window, qtbot, dicom_factory):
    win = make_window(model="tiny", engine_loader=_loader, auto_despeckle=True)
    with qtbot.waitSignal(win.despeckle_ended, timeout=60000):
        assert win.open_file(_clip(dicom_factory, n=2))
    first = win.session.means[0].copy()
    win.engine_panel.steps_spin.setValue(3)  # results dropped at once, the clip despeckled again
    assert win.runner.busy and win.session.settings.steps == 3
    qtbot.waitUntil(lambda: len(win.session.means) == 2 and not win.runner.busy, timeout=60000)
    assert not np.array_equal(first, win.session.means[0])


def test_export_derived_series_and_read_back(window, qtbot, dicom_factory, file_snapshot, tmp_path):
    src = _clip(dicom_factory, n=3)
    snap = file_snapshot(src)
    assert window.open_file(src)
    assert window.export_dicom(str(tmp_path / "none.dcm")) is None  # nothing despeckled yet
    assert "despeckle" in window.messages[-1][1]
    _despeckle_all(window, qtbot)
    out = tmp_path / "derived.dcm"
    assert window.export_dicom(str(out), include_uncertainty=True) == out
    assert snap.unchanged()
    s_ds = pydicom.dcmread(src)
    d_ds = pydicom.dcmread(out)
    assert d_ds.StudyInstanceUID == s_ds.StudyInstanceUID
    assert d_ds.SeriesInstanceUID != s_ds.SeriesInstanceUID and d_ds.SOPInstanceUID != s_ds.SOPInstanceUID
    assert list(d_ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "tiny" in d_ds.DerivationDescription
    clip = open_image(src)
    back = open_image(out)
    assert back.n_frames == 3
    for i in range(3):
        mask = clip.process_mask(i)
        a, b = clip.frame(i), back.frame(i)
        assert np.array_equal(a[~mask], b[~mask]), "non-B-mode / colour pixels must be byte-identical"
        assert not np.array_equal(a[mask], b[mask])
    unc = pydicom.dcmread(tmp_path / "derived_uncertainty.dcm")
    assert unc.SOPInstanceUID != d_ds.SOPInstanceUID and unc.pixel_array.max() > 0
    assert window.export_dicom(str(src)) is None and snap.unchanged()  # the source is protected


def test_png_and_labelled_mp4_exports(window, qtbot, dicom_factory, tmp_path):
    from usclean_gui.app import export, uncertainty

    assert window.open_file(_clip(dicom_factory, n=3))
    assert window.export_mp4(str(tmp_path / "x.mp4")) is None  # refused until every frame is done
    _despeckle_all(window, qtbot)
    png = window.export_png(str(tmp_path / "panes.png"))
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 50 and img.std() > 5
    mp4 = window.export_mp4(str(tmp_path / "cine.mp4"))
    cap = cv2.VideoCapture(str(mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, frame = cap.read()
    h, w = window.session.shape
    assert ok and frame.shape[1] >= 3 * w and frame.shape[0] >= export.HEADER_PX + h + export.BAR_PX
    header = frame[:export.HEADER_PX].astype(float)
    assert header.max() > 150 and (header > 150).mean() < 0.2  # white label text on black
    bar = frame[export.HEADER_PX + h + 6:export.HEADER_PX + h + 14,
                2 * w + 14:3 * w - 14].astype(float).mean(axis=(0, 2))
    q = len(bar) // 4
    assert bar[:q].mean() + 80 < bar[-q:].mean()  # the colour bar under the third pane: dark to bright
    exact = export.colour_bar(200, "uncertainty: member spread, grey levels")
    lut = uncertainty.lut()
    assert np.array_equal(exact[10, 12], lut[0]) and np.array_equal(exact[10, 187], lut[-1])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_uncertainty_on_a_fixed_scale(window, qtbot, dicom_factory):
    """The same std has the same colour in every clip and frame; the bar is labelled in words."""
    from usclean_gui.app import uncertainty

    levels = window.panes.colorbar.levels()
    assert window.open_file(_clip(dicom_factory, n=2, colour=False))
    _despeckle_all(window, qtbot)
    assert window.panes.colorbar.levels() == levels == uncertainty.levels()
    assert window.panes.overlay.levels is not None and tuple(window.panes.overlay.levels) == uncertainty.levels()
    assert window.panes.colorbar.axis.labelText == "uncertainty: member spread, grey levels"
    ov = window.panes.image(2)
    s = window.session
    mask = s.paste_mask(0)
    assert np.isnan(ov[~mask]).all() and np.isfinite(ov[mask]).all()
    np.testing.assert_allclose(ov[mask], np.log2(np.clip(s.std_frame(0)[mask] * 255, 0.5, 32)), rtol=1e-5)
    # another clip, another frame: the overlay's levels and the bar do not move
    assert window.open_file(_clip(dicom_factory, n=2, colour=True, name="b.dcm"))
    _despeckle_all(window, qtbot)
    window.cine.set_frame(1)
    assert window.panes.colorbar.levels() == levels and tuple(window.panes.overlay.levels) == uncertainty.levels()
    assert uncertainty.encode(np.array([1 / 255, 4 / 255, 1.0]))[1] == pytest.approx(2.0)
    assert uncertainty.label({"uncertainty": {"aleatoric_scale": 1.2}}) == uncertainty.CALIBRATED_LABEL


def test_overlay_opacity_and_csv_provenance_after_despeckling(window, qtbot, dicom_factory, tmp_path):
    import csv

    from usclean_gui.app.viewer_state import RoiShape

    assert window.open_file(_clip(dicom_factory, n=2, colour=False))
    window.engine_panel.steps_spin.setValue(2)
    window.engine_panel.members_spin.setValue(2)
    _despeckle_all(window, qtbot)
    window.panes.opacity.setValue(25)
    assert window.panes.overlay.opacity() == pytest.approx(0.25)
    window.roi.set_roi(RoiShape("target", "ellipse", params=(40, 50, 20, 20)))
    window.roi.set_roi(RoiShape("background", "rect", params=(90, 30, 30, 30)))
    m = window.roi.current
    assert m.despeckled is not None and window.roi.table.item(0, 1).text() == "%.3f" % m.despeckled.cnr
    out = tmp_path / "m.csv"
    assert window.export_csv(str(out)) == out
    rows = {r["image"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    d = rows["despeckled"]
    assert d["model"] == "tiny" and d["steps"] == "2" and d["members"] == "2" and d["sampler"] == "default"
    assert d["area_unit"] == "mm²" and rows["original"]["model"] == "" and d["roi_mode"] == "fixed"
    assert float(d["cnr"]) == pytest.approx(m.despeckled.cnr, rel=1e-5)


def test_screenshot_mode(qtbot, dicom_factory, tmp_path, capsys):
    from usclean_gui.app import main
    from usclean_gui.app.headless import screenshot

    src = _clip(dicom_factory, n=3)
    for layout in ("three", "two", "one"):
        out = tmp_path / ("shot_%s.png" % layout)
        assert screenshot(str(src), str(out), engine_loader=_loader, layout=layout, frame=1) == 0
        img = cv2.imread(str(out))
        assert img is not None and img.shape[:2] == (768, 1366) and img.std() > 5
    bad = dicom_factory.bad("not_dicom")
    assert main([str(bad), "--screenshot", str(tmp_path / "bad.png")]) == 2
    assert "Cannot open" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
    assert main(["--screenshot", str(tmp_path / "x.png")]) == 2
    assert main([str(src), "--screenshot", str(tmp_path / "x.png"), "--size", "big"]) == 2
    assert screenshot(str(src), str(tmp_path / "no" / "such" / "dir.png"), engine_loader=_loader) == 2
    assert screenshot(str(src), str(src), engine_loader=_loader) == 2  # never the input file
    assert "cannot write the screenshot" in capsys.readouterr().err


def test_torch_leaves_a_core_for_the_gui(window, qtbot, dicom_factory):
    import os

    import torch

    from usclean_gui.app.engine_work import torch_threads

    assert torch_threads() == max(1, (os.cpu_count() or 2) - 1)
    assert window.open_file(_clip(dicom_factory, n=1))
    _despeckle_all(window, qtbot)
    assert torch.get_num_threads() == torch_threads()


def test_importing_the_app_package_is_cheap():
    import subprocess
    import sys

    code = ("import sys, usclean_gui.app; "
            "print(sorted(m for m in ('PySide6', 'torch', 'pyqtgraph') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_console_screenshot_end_to_end(dicom_factory, tmp_path):
    """``usclean-gui FILE --screenshot OUT --model FOLDER`` in a fresh process, then with corrupt weights."""
    import os
    import subprocess
    import sys

    from engine.weights import save_model

    ens = tiny_ensemble(seed=0)
    sch = ens.schedule
    folder = tmp_path / "model"
    save_model(folder, ens.net, {"mode": "irsde", "name": "tiny-e2e", "default_sampler": "posterior",
                                 "default_steps": 1, "schedule": {"lambda": sch.lam, "T": sch.T, "eps": sch.eps}})
    src = _clip(dicom_factory, n=2)
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "usclean_gui.app", str(src), "--screenshot", str(out), "--model", str(folder),
           "--layout", "two"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=110, env=env)
    assert run.returncode == 0, run.stderr
    img = cv2.imread(str(out))
    assert img is not None and img.std() > 5
    # corrupt weights: a clear message and exit code 3, no picture, no traceback
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    out.unlink()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=110, env=env)
    assert run.returncode == 3 and "SHA-256" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not out.exists()
