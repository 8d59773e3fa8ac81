"""GUI: the background engine (tiny real ensemble), responsiveness, cancel, close, errors, exports."""
from __future__ import annotations

import gc
import time

import cv2
import numpy as np
import pydicom
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QElapsedTimer, QEvent, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.testing import tiny_ensemble  # noqa: E402
from usclean_gui.app.main_window import MainWindow  # noqa: E402
from usclean_gui.dicom import open_image  # noqa: E402


def _loader(name: str):
    if name == "broken":
        raise ValueError("model 'broken': weights do not match the model card's SHA-256")
    return tiny_ensemble(seed=0)


@pytest.fixture
def window(make_window):
    win = make_window(model="tiny", engine_loader=_loader)
    yield win
    win.engine.shutdown(5000)


class StallMeter:
    """A 10 ms QTimer recording the longest gap between its ticks (event-loop stalls)."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.clock.start()
        self.last = 0
        self.worst = 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def stop(self) -> int:
        self.timer.stop()
        return self.worst


def _clip(dicom_factory, n=6, colour=True):
    return dicom_factory.dicom("clip.dcm", dicom_factory.frames(n_frames=n, colour=colour), spacing_mm=(0.25, 0.3))


def test_despeckle_streams_frames_without_stalling(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory))
    window.steps_spin.setValue(8)
    arrived: list[int] = []
    window.engine.frame_ready.connect(lambda job, i, m, s: arrived.append(i))
    # Windows closed by earlier tests are deleted later by the event loop: do it now, not while measuring.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()
    gc.collect()
    meter = StallMeter()
    t0 = time.monotonic()
    with qtbot.waitSignal(window.engine.finished, timeout=60000):
        job = window.despeckle()
        assert job is not None and window.cancel_button.isEnabled()
    elapsed = time.monotonic() - t0
    worst = meter.stop()
    assert arrived == list(range(6))  # streamed frame by frame, in order
    print("run %.2f s, worst stall %d ms" % (elapsed, worst))
    assert worst < 200, "event loop stalled %d ms during a %.1f s run" % (worst, elapsed)
    assert window.progress.value() == 1000 and "6 frames" in window.eta_label.text()
    assert "2 members" in window.model_info.text() and window.members_spin.maximum() == 2
    s = window.session
    assert sorted(s.means) == list(range(6)) and s.means[0].shape == (96, 120)  # the B-mode box only
    # the three panes hold non-constant images
    for k in range(3):
        img = window.panes.image(k)
        finite = img[np.isfinite(img)]
        assert finite.size and float(np.ptp(finite)) > 0, "pane %d is constant" % k
    # only grey B-mode pixels changed; text, Doppler and calipers are untouched
    orig, desp = s.original_frame(0), s.despeckled_frame(0)
    mask = s.clip.process_mask(0)
    changed = np.any(orig != desp, axis=-1)
    assert changed[mask].mean() > 0.5 and not changed[~mask].any()
    assert not window.cancel_button.isEnabled()


def test_cancel_mid_run(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=8))
    window.steps_spin.setValue(60)
    with qtbot.waitSignal(window.engine.frame_ready, timeout=30000):
        window.despeckle()
    t0 = time.monotonic()
    with qtbot.waitSignal(window.engine.cancelled, timeout=2000):
        window.cancel_button.click()
    assert time.monotonic() - t0 < 1.0
    assert 1 <= len(window.session.means) < 8
    assert not window.engine.busy
    # the engine thread is still alive: a new job runs
    window.steps_spin.setValue(1)
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle([7])
    assert 7 in window.session.means


def test_closing_during_run_cancels_within_a_second(qtbot, tmp_path, dicom_factory):
    win = MainWindow(engine_loader=_loader, settings=QSettings(str(tmp_path / "g.ini"), QSettings.Format.IniFormat))
    win.message_sink = lambda level, text: None
    win.show()
    assert win.open_file(_clip(dicom_factory, n=8))
    win.steps_spin.setValue(80)
    with qtbot.waitSignal(win.engine.progress, timeout=30000):
        win.despeckle()
    t0 = time.monotonic()
    win.close()
    assert time.monotonic() - t0 < 1.0
    assert not win.engine._thread.isRunning()


def test_engine_error_is_a_message_not_a_dead_thread(window, qtbot, dicom_factory):
    assert window.open_file(_clip(dicom_factory, n=2))
    shown = []
    window.message_sink = lambda level, text: shown.append((level, text))
    window.model_combo.setCurrentText("broken")
    with qtbot.waitSignal(window.engine.failed, timeout=10000):
        window.despeckle()
    assert shown and shown[-1][0] == "error" and "SHA-256" in shown[-1][1]
    window.model_combo.setCurrentText("tiny")
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    assert len(window.session.means) == 2


def test_export_derived_series_and_read_back(window, qtbot, dicom_factory, file_snapshot, tmp_path):
    src = _clip(dicom_factory, n=3)
    snap = file_snapshot(src)
    assert window.open_file(src)
    assert window.export_dicom(str(tmp_path / "none.dcm")) is None  # nothing despeckled yet
    assert "despeckle" in window.messages[-1][1]
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
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
    # the source is protected
    assert window.export_dicom(str(src)) is None and snap.unchanged()


def test_png_and_mp4_exports(window, qtbot, dicom_factory, tmp_path):
    assert window.open_file(_clip(dicom_factory, n=3))
    assert window.export_mp4(str(tmp_path / "x.mp4")) is None  # refused until every frame is done
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    png = window.export_png(str(tmp_path / "panes.png"))
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 50 and img.std() > 5
    mp4 = window.export_mp4(str(tmp_path / "cine.mp4"))
    cap = cv2.VideoCapture(str(mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, frame = cap.read()
    assert ok and frame.shape[1] >= 3 * 176
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_screenshot_mode(qtbot, dicom_factory, tmp_path, capsys):
    from usclean_gui.app import main
    from usclean_gui.app.headless import screenshot

    src = _clip(dicom_factory, n=3)
    out = tmp_path / "shot.png"
    assert screenshot(str(src), str(out), engine_loader=_loader) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > img.shape[0] and img.std() > 5
    bad = dicom_factory.bad("not_dicom")
    assert main([str(bad), "--screenshot", str(tmp_path / "bad.png")]) == 2
    assert "Cannot open" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
    assert main(["--screenshot", str(tmp_path / "x.png")]) == 2
    assert screenshot(str(src), str(tmp_path / "no" / "such" / "dir.png"), engine_loader=_loader) == 2
    assert screenshot(str(src), str(src), engine_loader=_loader) == 2  # never the input file
    assert "cannot write the screenshot" in capsys.readouterr().err


def test_torch_leaves_a_core_for_the_gui(window, qtbot, dicom_factory):
    import os

    import torch

    from usclean_gui.app.engine_thread import torch_threads

    assert torch_threads() == max(1, (os.cpu_count() or 2) - 1)
    assert window.open_file(_clip(dicom_factory, n=1))
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    assert torch.get_num_threads() == torch_threads()


def test_importing_the_app_package_is_cheap():
    import subprocess
    import sys

    code = "import sys, usclean_gui.app; print(sorted(m for m in ('PySide6', 'torch', 'pyqtgraph') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_overlay_opacity_and_csv_provenance_after_despeckling(window, qtbot, dicom_factory, tmp_path):
    import csv

    from usclean_gui.app.viewer_state import RoiShape

    assert window.open_file(_clip(dicom_factory, n=2, colour=False))
    window.steps_spin.setValue(2)
    window.members_spin.setValue(2)
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    window.panes.opacity.setValue(25)
    assert window.panes.overlay.opacity() == pytest.approx(0.25)
    lo, hi = window.panes.colorbar.levels()
    std = window.session.std_frame(0)
    assert lo == 0.0 and 0 < hi <= float(std.max()) + 1e-6
    # the overlay is transparent (NaN) outside the despeckled pixels
    ov = window.panes.image(2)
    assert np.isnan(ov[~window.session.paste_mask(0)]).all() and np.isfinite(ov[window.session.paste_mask(0)]).all()
    window.roi.set_roi(RoiShape("target", "ellipse", params=(40, 50, 20, 20)))
    window.roi.set_roi(RoiShape("background", "rect", params=(90, 30, 30, 30)))
    m = window.roi.current
    assert m.despeckled is not None and window.roi.table.item(0, 1).text() == "%.3f" % m.despeckled.cnr
    out = tmp_path / "m.csv"
    assert window.export_csv(str(out)) == out
    rows = {r["image"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    d = rows["despeckled"]
    assert d["model"] == "tiny" and d["steps"] == "2" and d["members"] == "2" and d["sampler"] == "default"
    assert d["area_unit"] == "mm²" and rows["original"]["model"] == ""
    assert float(d["cnr"]) == pytest.approx(m.despeckled.cnr, rel=1e-5)


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
    cmd = [sys.executable, "-m", "usclean_gui.app", str(src), "--screenshot", str(out), "--model", str(folder)]
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


def test_same_result_as_the_cli(window, qtbot, dicom_factory):
    """A whole-clip run in the window equals ``usclean despeckle``'s (same code path, seeds, normalisation)."""
    from usclean_gui.commands.despeckle import despeckle_clip

    src = _clip(dicom_factory, n=3)
    assert window.open_file(src)
    window.steps_spin.setValue(2)
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    cli = despeckle_clip(open_image(src), tiny_ensemble(seed=0), range(3), steps=2)
    for i in range(3):
        np.testing.assert_allclose(window.session.means[i], cli.mean[i], atol=1e-5)
        np.testing.assert_allclose(window.session.stds[i], cli.std[i], atol=1e-5)


def test_long_clip_goes_to_the_engine_in_bounded_calls(window, qtbot, dicom_factory, monkeypatch):
    import usclean_gui.app.engine_thread as et

    calls: list[int] = []
    ens = tiny_ensemble(seed=0)
    real = ens.iter_despeckle

    def spy(frames, **kw):
        calls.append(len(frames))
        return real(frames, **kw)

    monkeypatch.setattr(ens, "iter_despeckle", spy)
    window.engine._worker._loader = lambda name: ens
    monkeypatch.setattr(et, "MAX_CALL_BYTES", 2 * 96 * 120 * 4)  # two B-mode crops per call
    assert window.open_file(_clip(dicom_factory, n=5))
    with qtbot.waitSignal(window.engine.finished, timeout=30000):
        window.despeckle()
    assert calls == [2, 2, 1] and sorted(window.session.means) == [0, 1, 2, 3, 4]
