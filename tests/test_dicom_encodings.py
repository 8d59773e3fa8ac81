"""Every valid encoding pydicom can decode opens: native YBR_FULL_422, Deflated, big endian
(converted on write, the source untouched), MONOCHROME1 detection on displayed values; real
ultrasound examples and the demo clip round-trip through ``usclean despeckle``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian

from usclean_gui import cli
from usclean_gui.dicomio import box_iou, open_image

engine_testing = pytest.importorskip("engine.testing")
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.weights import save_model

    tiny = engine_testing.tiny_ensemble(seed=0)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(folder, tiny.net, {"name": "tiny-test", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                  "default_sampler": "posterior", "default_steps": 1})
    return folder


def _bundled(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():
        pytest.skip("the pydicom wheel does not carry %s" % name)
    return path


def _big_endian(src: Path, dst: Path) -> Path:
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = arr.astype(">u2" if arr.dtype.itemsize == 2 else arr.dtype).tobytes()
    pydicom.dcmwrite(dst, ds, enforce_file_format=True)
    return dst


def _deflated(src: Path, dst: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.mark.parametrize("name,shape,colour", [
    ("SC_ybr_full_422_uncompressed.dcm", (100, 100), True),  # 4:2:2 subsampled: 2/3 of the RGB length
    ("image_dfl.dcm", (512, 512), False),  # Deflated Explicit VR Little Endian
    ("MR_small_bigendian.dcm", (64, 64), False),  # big endian, signed 16 bit
    ("ExplVR_BigEnd.dcm", (60, 80), True),  # big endian RGB ultrasound
])
def test_bundled_encodings_open(name, shape, colour):
    path = _bundled(name)
    clip = open_image(path)
    assert clip.shape == shape and clip.is_color == colour
    f = clip.frame(0)
    ref = pydicom.dcmread(path).pixel_array  # pydicom's own full decode (YBR -> RGB, inflated)
    assert f.dtype.isnative and np.array_equal(f, ref)
    g = clip.gray_frame(0)
    assert g.dtype == np.float32 and 0 <= g.min() <= g.max() <= 1 and g.std() > 0


@pytest.mark.parametrize("convert", [_big_endian, _deflated], ids=["big_endian", "deflated"])
def test_converted_factory_file_roundtrips(dicom_factory, file_snapshot, tiny_model, tmp_path, convert, capsys):
    frames = dicom_factory.frames(n_frames=3, colour=False, seed=7)
    le = dicom_factory.dicom("le.dcm", frames, bits=16)
    src = convert(le, tmp_path / ("src_%s.dcm" % convert.__name__))
    snap = file_snapshot(src)
    clip, ref = open_image(src), open_image(le)
    assert clip.bmode_region == dicom_factory.box and clip.spacing_mm == pytest.approx(dicom_factory.spacing_mm)
    for i in range(3):
        assert np.array_equal(clip.frame(i), ref.frame(i)) and clip.frame(i).dtype.isnative
    out = tmp_path / "out.dcm"
    assert cli.main(["despeckle", str(src), "-o", str(out), "--model", str(tiny_model), "--quiet"]) == 0, \
        capsys.readouterr().err
    assert snap.unchanged()
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    res = open_image(out)
    for i in range(3):
        m = clip.process_mask(i)
        assert (np.array_equal(res.frame(i)[~m], clip.frame(i)[~m])
                and (res.frame(i)[m] != clip.frame(i)[m]).mean() > 0.5)


def test_ybr_full_422_native_through_the_cli(tmp_path, file_snapshot, tiny_model):
    src = tmp_path / "ybr422.dcm"
    shutil.copy(_bundled("SC_ybr_full_422_uncompressed.dcm"), src)
    snap = file_snapshot(src)
    out = tmp_path / "out.dcm"
    assert cli.main(["despeckle", str(src), "-o", str(out), "--model", str(tiny_model), "--quiet"]) == 0
    clip, res = open_image(src), open_image(out)
    m = clip.process_mask(0)
    assert np.array_equal(res.frame(0)[~m], pixel_array(src)[~m]) and snap.unchanged()
    assert pydicom.dcmread(out).PhotometricInterpretation == "RGB"


@pytest.mark.parametrize("bits", [8, 16])
def test_monochrome1_detection_on_displayed_values(dicom_factory, bits):
    """Without regions, MONOCHROME1 is detected on its inverted (displayed) values: the white
    background of the stored values is the black of the screen."""
    frames = dicom_factory.frames(n_frames=3, colour=False, seed=3)
    clip = open_image(dicom_factory.dicom("m1.dcm", frames, photometric="MONOCHROME1", bits=bits, region=None))
    assert clip.region_source == "detected"
    assert box_iou(clip.bmode_region, dicom_factory.box) >= 0.9
    assert clip.gray_frame(0)[0, -1] == 0.0  # the screen's black corner
    assert clip.masks.fov()[60, 70] and not clip.masks.fov()[2, 170]


@pytest.mark.parametrize("example,frames", [("ybr_color", "0:3"), ("palette_color", None), ("rgb_color", None),
                                            ("jpeg2k", None), ("demo", "0:3")])
def test_real_files_roundtrip_with_non_tissue_pixels_identical(tmp_path, tiny_model, file_snapshot, example, frames):
    path = ROOT / "resources" / "demo" / "demo_clip.dcm" if example == "demo" else Path(examples.get_path(example))
    src = tmp_path / ("src_%s.dcm" % example)
    shutil.copy(path, src)
    snap = file_snapshot(src)
    out, std = tmp_path / "out.dcm", tmp_path / "std.dcm"
    argv = ["despeckle", str(src), "-o", str(out), "--uncertainty", str(std), "--model", str(tiny_model), "--quiet"]
    assert cli.main(argv + (["--frames", frames] if frames else [])) == 0
    assert snap.unchanged() and [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    clip, res = open_image(src), open_image(out)
    for k in range(res.n_frames):
        a, b, m = clip.frame(k), res.frame(k), clip.process_mask(k)
        assert np.array_equal(b[~m], a[~m])  # text, marks, bars, colour, background: byte for byte
        assert m.sum() > 0.02 * m.size and (b[m] != a[m]).mean() > 0.3  # and the tissue was despeckled
    assert pydicom.dcmread(std).pixel_array.max() > 0
