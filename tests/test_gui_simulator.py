"""GUI: the simulator tab (fast path, despeckling with metrics, domain shift, full physics process)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.timeout(120)

from PySide6.QtCore import QSettings  # noqa: E402

from engine.metrics import cnr, gcnr, psnr, ssim  # noqa: E402
from engine.testing import tiny_ensemble  # noqa: E402
from simulator.probes import PROBE_NAMES  # noqa: E402
from usclean_gui.app.main_window import MainWindow  # noqa: E402


@pytest.fixture(autouse=True)
def _psf_cache_in_tmp(tmp_path, monkeypatch):
    """PSF banks for new probe settings (e.g. another frequency) go to tmp, not the user's cache."""
    import simulator.psf as psf

    monkeypatch.setattr(psf, "CACHE_DIR", tmp_path / "psf")


@pytest.fixture
def window(make_window):
    win = make_window(model="tiny", engine_loader=lambda name: tiny_ensemble(seed=1))
    win.tabs.setCurrentWidget(win.simulator)
    yield win
    win.simulator.shutdown()
    win.engine.shutdown(5000)


def test_fast_simulation_despeckle_and_metrics(window, qtbot):
    tab = window.simulator
    tab.phantom.setCurrentText("cyst")
    tab.probe.setCurrentText("L12-3v")
    tab.size.setValue(96)
    with qtbot.waitSignal(tab.despeckled, timeout=60000):
        tab.despeckle_button.click()  # simulates first, then despeckles
    sim = tab.sim
    assert sim is not None and sim.bmode.shape == (96, 96) and sim.probe == "L12-3v"
    for k in range(4):
        img = tab.items[k].image
        assert img is not None and float(np.ptp(img)) > 0, "pane %d is constant" % k
    m = sim.mask
    expect = {"PSNR (dB)": psnr(tab.mean, sim.clean, mask=m), "SSIM": ssim(tab.mean, sim.clean, mask=m),
              "CNR": cnr(tab.mean[sim.lesion_mask & m], tab.mean[sim.background_mask & m]),
              "gCNR": gcnr(tab.mean[sim.lesion_mask & m], tab.mean[sim.background_mask & m])}
    for r, name in enumerate(("PSNR (dB)", "SSIM", "CNR", "gCNR")):
        assert tab.metrics.item(r, 1).text() == "%.3f" % expect[name]
        assert tab.metrics.item(r, 0).text() != ""
    # a different frequency gives a different simulation
    tab.freq.setValue(5.0)
    with qtbot.waitSignal(tab.simulated, timeout=30000):
        tab.fast_button.click()
    assert not np.array_equal(tab.sim.bmode, sim.bmode) and tab.mean is None


def test_domain_shift_table(window, qtbot):
    tab = window.simulator
    tab.phantom.setCurrentText("lesions")
    tab.size.setValue(64)
    with qtbot.waitSignal(tab.shift_done, timeout=120000):
        tab.shift_button.click()
    assert tab.shift_table.rowCount() == len(PROBE_NAMES)
    assert sorted(tab.shift_results) == sorted(PROBE_NAMES)
    for probe, res in tab.shift_results.items():
        assert math.isfinite(res["desp"]["PSNR (dB)"]) and 0 <= res["desp"]["gCNR"] <= 1
    assert {tab.shift_table.item(r, 0).text() for r in range(4)} == set(PROBE_NAMES)


def test_full_physics_runs_in_a_cancellable_process(window, qtbot):
    tab = window.simulator
    tab.full_button.click()
    assert tab.busy and tab._proc.is_alive() and tab._proc.pid != __import__("os").getpid()
    assert not tab.fast_button.isEnabled() and tab.cancel_button.isEnabled()
    qtbot.wait(300)
    assert "full path" in tab.status.text() and "worker process" in tab.status.text()
    t0 = time.monotonic()
    tab.cancel_button.click()
    assert time.monotonic() - t0 < 1.5
    assert not tab._proc.is_alive() and not tab.busy and tab.fast_button.isEnabled()
    assert "cancelled" in tab.status.text()


def test_worker_process_result_is_shown(window, qtbot):
    """The worker-process round trip (spawn, simulate, return, display), on the fast path for speed."""
    tab = window.simulator
    tab.phantom.setCurrentText("cyst")
    tab.probe.setCurrentText("L12-3v")
    tab.size.setValue(64)
    with qtbot.waitSignal(tab.simulated, timeout=60000):
        tab.simulate_full(path="fast")
    assert tab.sim is not None and tab.sim.path == "fast" and tab.sim.bmode.shape == (64, 64)
    assert not tab.busy and not tab._proc.is_alive()
    assert "worker process" in tab.status.text()
    assert tab.metrics.item(0, 0).text() != ""


def test_simulator_tab_is_built_when_first_shown(qtbot, tmp_path):
    from usclean_gui.app.simulator_tab import SimulatorTab

    win = MainWindow(settings=QSettings(str(tmp_path / "g.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    assert win._simulator is None and not isinstance(win.tabs.widget(1), SimulatorTab)
    win.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: isinstance(win.tabs.widget(1), SimulatorTab), timeout=60000)
    assert win.tabs.currentIndex() == 1 and win.tabs.widget(1) is win.simulator
    win.close()
