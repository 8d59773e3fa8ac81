"""Panes: every tissue region despeckled with its own spacing, every non-tissue region kept byte
for byte (a colour bar inside a pane included), dual and quad layouts detected without regions."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from usclean_gui import cli
from usclean_gui.dicomio import box_iou, detect_panes, open_image
from usclean_gui.dicomio.regions import Layout, Pane, UltrasoundRegion

engine_testing = pytest.importorskip("engine.testing")
SHAPE = (128, 300)
DUAL = [(10, 16, 140, 112), (160, 16, 290, 112)]
QUAD = [(8, 6, 142, 60), (158, 6, 292, 60), (8, 68, 142, 122), (158, 68, 292, 122)]
BAR = (124, 30, 130, 90)  # a colour bar (RegionDataType 13) inside the left pane
STRIP = (0, 114, 300, 128)  # a spectral Doppler strip (RegionDataType 3)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.weights import save_model

    tiny = engine_testing.tiny_ensemble(seed=0)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(folder, tiny.net, {"name": "tiny-test", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                  "default_sampler": "posterior", "default_steps": 1})
    return folder


def _speckle(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    env = np.abs(rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))).astype(np.float32)
    env = cv2.GaussianBlur(env, (3, 3), 0.8)
    return np.clip(np.rint((20 * np.log10(np.maximum(env, 1e-6)) + 40) / 50 * 230), 12, 235).astype(np.uint8)


def _screen(boxes, n: int = 3, seed: int = 0, bar: bool = True, strip: bool = True) -> np.ndarray:
    """(n, H, W, 3) uint8: speckle panes on black, a colour bar inside the first, a spectrum strip."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n,) + SHAPE + (3,), np.uint8)
    for f in range(n):
        for x0, y0, x1, y1 in boxes:
            out[f, y0:y1, x0:x1] = _speckle(rng, y1 - y0, x1 - x0)[..., None]
        if bar:
            x0, y0, x1, y1 = BAR
            ramp = np.linspace(255, 0, y1 - y0).astype(np.uint8)
            out[f, y0:y1, x0:x1, 0] = ramp[:, None]
            out[f, y0:y1, x0:x1, 1] = ramp[:, None]
            out[f, y0:y1, x0:x1, 2] = 255 - ramp[:, None] // 2
            out[f, y0 + 5:y1 - 5, x0 + 1:x1 - 1] = ramp[5:-5, None, None]  # and a grey part of the bar
        if strip:
            x0, y0, x1, y1 = STRIP
            out[f, y0:y1, x0:x1] = rng.integers(0, 200, (y1 - y0, x1 - x0, 1), dtype=np.uint8)
    return out


def _region(box, data_type: int, spatial: int, spacing=(0.2, 0.3)) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = spatial, data_type, 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = box[0], box[1]
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box[2] - 1, box[3] - 1
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX, item.PhysicalDeltaY = spacing[1] / 10.0, spacing[0] / 10.0
    return item


def _file(dicom_factory, name, frames, boxes, spacings=None, extra=True):
    path = dicom_factory.dicom(name, frames, region=None)
    ds = pydicom.dcmread(path)
    items = [_region(b, 1, 1, s) for b, s in zip(boxes, spacings or [(0.2, 0.3)] * len(boxes))]
    if extra:
        items += [_region(BAR, 13, 1), _region(STRIP, 3, 3)]
    ds.SequenceOfUltrasoundRegions = Sequence(items)
    ds.save_as(path)
    return path


def _run(src, out, model, *extra):
    assert cli.main(["despeckle", str(src), "-o", str(out), "--model", str(model), "--quiet", *extra]) == 0


def test_dual_pane_layout_and_spacings(dicom_factory):
    path = _file(dicom_factory, "dual.dcm", _screen(DUAL), DUAL, [(0.2, 0.3), (0.4, 0.5)])
    clip = open_image(path)
    assert [p.box for p in clip.layout.panes] == DUAL and clip.region_source == "dicom"
    assert [p.spacing_mm for p in clip.layout.panes] == [pytest.approx((0.2, 0.3)), pytest.approx((0.4, 0.5))]
    assert sorted(kind for _, kind in clip.layout.kept) == ["PW spectral Doppler", "colour bar"]
    assert clip.bmode_region == (10, 16, 290, 112)  # around both panes


def test_both_panes_despeckled_bar_and_strip_kept(dicom_factory, tiny_model, tmp_path, file_snapshot):
    frames = _screen(DUAL)
    src = _file(dicom_factory, "dual.dcm", frames, DUAL)
    snap = file_snapshot(src)
    out = tmp_path / "out.dcm"
    _run(src, out, tiny_model)
    res = open_image(out)
    for k in range(3):
        a, b = frames[k], res.frame(k)
        for x0, y0, x1, y1 in DUAL:
            pane = np.zeros(SHAPE, bool)
            pane[y0 + 3:y1 - 3, x0 + 3:x1 - 3] = True
            pane[BAR[1]:BAR[3], BAR[0] - 2:BAR[2] + 2] = False
            assert np.any(a[pane] != b[pane], axis=-1).mean() > 0.5  # each pane despeckled
        for x0, y0, x1, y1 in (BAR, STRIP):
            assert np.array_equal(a[y0:y1, x0:x1], b[y0:y1, x0:x1])  # kept byte for byte
        outside = np.ones(SHAPE, bool)
        for x0, y0, x1, y1 in DUAL:
            outside[y0:y1, x0:x1] = False
        assert np.array_equal(a[outside], b[outside])
    assert snap.unchanged()
    ds = pydicom.dcmread(out)
    assert len(ds.SequenceOfUltrasoundRegions) == 4  # the output still declares every region, and they hold


def test_quad_layout_all_panes(dicom_factory, tiny_model, tmp_path):
    frames = _screen(QUAD, bar=False, strip=False)
    src = _file(dicom_factory, "quad.dcm", frames, QUAD, extra=False)
    out = tmp_path / "out.dcm"
    _run(src, out, tiny_model, "--frames", "1")
    b = open_image(out).frame(0)
    for x0, y0, x1, y1 in QUAD:
        assert np.any(frames[1, y0:y1, x0:x1] != b[y0:y1, x0:x1], axis=-1).mean() > 0.5


@pytest.mark.parametrize("boxes", [DUAL, QUAD], ids=["dual", "quad"])
def test_panes_detected_without_regions(dicom_factory, boxes):
    frames = _screen(boxes, bar=False, strip=False)
    clip = open_image(dicom_factory.dicom("n.dcm", frames, region=None))
    found = [p.box for p in clip.layout.panes]
    assert clip.region_source == "detected" and len(found) == len(boxes)
    for want, got in zip(boxes, found):
        assert box_iou(want, got) >= 0.85
    grey = frames[0, ..., 0] / 255.0
    assert len(detect_panes(grey.astype(np.float32))) == len(boxes)


def test_toggled_off_pane_stays_as_it_was(dicom_factory, tiny_model, tmp_path):
    from usclean_gui.pipeline import despeckle_frames, ensemble_hook

    frames = _screen(DUAL)
    clip = open_image(_file(dicom_factory, "dual.dcm", frames, DUAL))
    clip.set_pane_enabled(1, False)
    (r,) = despeckle_frames(clip, ensemble_hook(engine_testing.tiny_ensemble(seed=0)), [0])
    x0, y0, x1, y1 = DUAL[1]
    assert np.array_equal(r.pixels[y0:y1, x0:x1], frames[0, y0:y1, x0:x1])
    x0, y0, x1, y1 = DUAL[0]
    assert np.any(r.pixels[y0:y1, x0:x1] != frames[0, y0:y1, x0:x1], axis=-1).mean() > 0.5
    clip.set_pane_enabled(0, False)
    with pytest.raises(ValueError, match="no B-mode pane"):
        list(despeckle_frames(clip, lambda k, c: [], [0]))


def test_non_finite_spacing_is_no_spacing():
    r = UltrasoundRegion((0, 0, 10, 10), 1, 1, 3, 3, float("inf"), 0.01)
    assert r.spacing_mm() is None and r.is_tissue
    assert UltrasoundRegion((0, 0, 10, 10), 1, 1, 3, 3, 0.02, 0.01).spacing_mm() == pytest.approx((0.1, 0.2))


def test_overlapping_panes_share_no_pixel():
    layout = Layout([Pane((0, 0, 100, 80), None, "dicom", "a"), Pane((60, 40, 120, 90), None, "dicom", "b")],
                    kept=[((10, 10, 20, 20), "colour bar")])
    a, b = layout.pane_masks((100, 130))
    assert not (a & b).any() and b[50, 70] and not a[50, 70]  # the smaller pane owns the overlap
    assert not a[15, 15] and a[5, 5]  # kept wins over both
