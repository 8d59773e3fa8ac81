"""GUI: the simulator tab (fast path, despeckling with metrics, domain shift with the trained probes
marked, full physics in a worker process, the fixed uncertainty colour bar)."""
from __future__ import annotations

import math

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


def _loader(name: str):
    ens = tiny_ensemble(seed=1)
    if name == "trained-l12":
        ens.card = {"training": {"probes": ["L12-3v"]}}
    return ens


@pytest.fixture
def window(make_window):
    win = make_window(model="tiny", engine_loader=_loader)
    win.tabs.setCurrentWidget(win.simulator)
    return win


def _gone(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(240)
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
    # the uncertainty pane uses the viewer's fixed scale and colour bar
    from usclean_gui.app import uncertainty

    assert tab.colorbar.levels() == uncertainty.levels() and tuple(tab.items[3].levels) == uncertainty.levels()
    assert tab.colorbar.axis.labelText == uncertainty.SPREAD_LABEL
    # a different frequency gives a different simulation (a new PSF bank: 33 s on the loaded 2-core machine)
    tab.freq.setValue(5.0)
    with qtbot.waitSignal(tab.simulated, timeout=150000):
        tab.fast_button.click()
    assert not np.array_equal(tab.sim.bmode, sim.bmode) and tab.mean is None


def test_domain_shift_table(window, qtbot):
    tab = window.simulator
    assert tab.model_combo.currentText() == "tiny"  # starts on the viewer's model, then is its own
    tab.set_model("trained-l12")
    assert window.engine_settings().model == "tiny"
    tab.phantom.setCurrentText("lesions")
    tab.size.setValue(64)
    with qtbot.waitSignal(tab.shift_done, timeout=120000):
        tab.shift_button.click()
    assert tab.shift_table.rowCount() == len(PROBE_NAMES)
    assert sorted(tab.shift_results) == sorted(PROBE_NAMES)
    for res in tab.shift_results.values():
        assert math.isfinite(res["desp"]["PSNR (dB)"]) and 0 <= res["desp"]["gCNR"] <= 1
    names = {tab.shift_table.item(r, 0).text() for r in range(4)}
    assert names == {p + (" (trained)" if p == "L12-3v" else "") for p in PROBE_NAMES}
    row = [r for r in range(4) if tab.shift_table.item(r, 0).text().startswith("L12-3v")][0]
    assert tab.shift_table.item(row, 0).font().bold() and "L12-3v" in tab.model_label.text()


def test_full_physics_runs_in_a_cancellable_process(window, qtbot):
    import os

    tab = window.simulator
    tab.full_button.click()
    assert tab.busy and not tab.fast_button.isEnabled() and tab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tab.full_pid is not None, timeout=30000)
    pid = tab.full_pid
    assert pid != os.getpid() and not _gone(pid)
    assert "full path" in tab.status.text() and "worker process" in tab.status.text()
    tab.cancel_button.click()  # the worker's quit(): its generator terminates the process
    qtbot.waitUntil(lambda: not tab.busy, timeout=5000)
    assert _gone(pid) and tab.fast_button.isEnabled() and tab.sim is None
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
    qtbot.waitUntil(lambda: not tab.busy, timeout=5000)
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
