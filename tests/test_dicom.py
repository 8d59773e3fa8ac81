"""Reading: usclean_gui.dicomio.open_image on real (pydicom.examples) and factory-written files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from usclean_gui.dicomio import Clip, DicomError, box_iou, detect_bmode_region, open_image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# (id, colour frames?, dicom() kwargs, lossless?)
VARIANTS = [
    ("rgb", True, {}, True),
    ("ybr_full", True, {"photometric": "YBR_FULL"}, True),
    ("ybr422_jpeg", True, {"photometric": "YBR_FULL_422", "transfer_syntax": JPEGBaseline8Bit}, False),
    ("palette8_single", True, {"photometric": "PALETTE COLOR", "n": 1}, True),
    ("palette16", True, {"photometric": "PALETTE COLOR", "palette_bits": 16}, True),
    ("mono2_8", False, {}, True),
    ("mono1_8", False, {"photometric": "MONOCHROME1"}, True),
    ("mono2_16", False, {"bits": 16}, True),
    ("mono1_16_single", False, {"photometric": "MONOCHROME1", "bits": 16, "n": 1}, True),
    ("rle_rgb", True, {"transfer_syntax": RLELossless}, True),
    ("rle_mono16", False, {"transfer_syntax": RLELossless, "bits": 16}, True),
    ("j2k_rgb", True, {"transfer_syntax": JPEG2000Lossless}, True),
    ("j2k_mono", False, {"transfer_syntax": JPEG2000Lossless}, True),
    ("j2k_lossy_mono", False, {"transfer_syntax": JPEG2000}, False),
    ("jpeg_mono", False, {"transfer_syntax": JPEGBaseline8Bit}, False),
    ("jpegls_mono", False, {"transfer_syntax": JPEGLSLossless}, True),
    ("jpegls_near_rgb", True, {"transfer_syntax": JPEGLSNearLossless}, False),
]


@pytest.mark.parametrize("name,colour,kw,lossless", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_open_variants(dicom_factory, name, colour, kw, lossless):
    kw = dict(kw)
    n = kw.pop("n", 3)
    ts = kw.get("transfer_syntax", pydicom.uid.ExplicitVRLittleEndian)
    if not dicom_factory.encoder_available(ts):
        pytest.skip("no encoder for %s here (pyjpegls not installed)" % pydicom.uid.UID(ts).name)
    frames = dicom_factory.frames(n_frames=n, colour=colour, seed=3)
    clip = open_image(dicom_factory.dicom(name + ".dcm", frames, **kw))

    assert isinstance(clip, Clip)
    assert clip.n_frames == n == len(clip)
    assert clip.shape == dicom_factory.shape
    assert clip.is_color == colour
    assert clip.bmode_region == dicom_factory.box and clip.region_source == "dicom"
    assert clip.spacing_mm == pytest.approx(dicom_factory.spacing_mm)
    assert (clip.frame_time_ms == pytest.approx(40.0)) if n > 1 else clip.frame_time_ms is None
    assert clip.lossy == (not lossless)
    assert clip.meta["TransferSyntaxUID"] == str(ts)
    assert clip.meta["PatientName"] == "TEST^FACTORY"

    expected_dtype = np.uint16 if kw.get("bits") == 16 else np.uint8
    for i in range(n):
        f = clip.frame(i)
        assert f.dtype == expected_dtype
        assert f.shape == (dicom_factory.shape + ((3,) if colour else ()))
        g = clip.gray_frame(i)
        assert g.dtype == np.float32 and g.shape == clip.shape
        assert 0.0 <= g.min() and g.max() <= 1.0
        truth_grey = (frames[i][..., 0] if colour else frames[i]).astype(np.float32) / 255.0
        grey_pix = clip.process_mask(i)
        photometric = kw.get("photometric", "RGB")
        if not lossless:
            assert _psnr(f, frames[i]) > 30.0
            assert np.abs(g[grey_pix] - truth_grey[grey_pix]).mean() < 0.02
        elif photometric == "PALETTE COLOR":
            # exactly the LUT applied to the stored indices (grey ramp has 224 levels)
            lut = dicom_factory.palette_lut()
            np.testing.assert_array_equal(f, lut[pixel_array(clip.path, index=i)])
            np.testing.assert_allclose(g[grey_pix], truth_grey[grey_pix], atol=1.01 / 255)
        elif photometric == "YBR_FULL":
            # grey survives RGB -> YBR -> RGB exactly; colours within rounding
            np.testing.assert_array_equal(f[grey_pix], frames[i][grey_pix])
            assert np.abs(f.astype(int) - frames[i]).max() <= 2
        else:
            np.testing.assert_array_equal(f if colour else clip.from_unit(g),
                                          frames[i] if colour else clip.from_unit(truth_grey))
            np.testing.assert_allclose(g[grey_pix], truth_grey[grey_pix], atol=1e-6)


def test_jpeg_ls_from_bundled_codestream():
    """JPEG-LS decoding with a real JPEG-LS file when no JPEG-LS encoder is installed here.

    pyjpegls (pydicom's JPEG-LS encoder) is not installed in this environment; pydicom's wheel
    carries a JPEG-LS lossless MR file, which exercises the same decoder path.
    """
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small_jpeg_ls_lossless.dcm"
    if not path.exists():
        pytest.skip("the pydicom wheel does not carry its JPEG-LS sample")
    clip = open_image(path)
    assert clip.meta["TransferSyntaxUID"] == str(JPEGLSLossless)
    assert clip.shape == (64, 64) and not clip.is_color
    np.testing.assert_array_equal(clip.frame(0), pixel_array(path, index=0))
    g = clip.gray_frame(0)
    assert g.dtype == np.float32 and 0 <= g.min() <= g.max() <= 1 and g.std() > 0


def test_example_ybr_jpeg_cine():
    path = examples.get_path("ybr_color")
    clip = open_image(path)
    assert clip.n_frames == 30 and clip.shape == (240, 320) and clip.is_color
    assert clip.meta["PhotometricInterpretation"] == "YBR_FULL_422"
    assert clip.lossy and clip.chroma_tolerance > 0
    # the file's region overruns the 320 x 240 image: clamped
    assert clip.bmode_region == (84, 31, 320, 240)
    assert clip.spacing_mm == pytest.approx((0.5104970559, 0.5104970559))
    assert clip.frame_time_ms == pytest.approx(33.333)
    for i in (0, 17, 29):
        f = clip.frame(i)
        assert f.dtype == np.uint8 and f.shape == (240, 320, 3)
        np.testing.assert_array_equal(f, pixel_array(path, index=i))  # already RGB, not converted twice
    m = clip.process_mask(5)
    x0, y0, x1, y1 = clip.bmode_region
    assert not m[:, :x0].any() and not m[:y0].any()
    f = clip.frame(5).astype(int)
    assert (f.max(-1) - f.min(-1))[m].max() <= clip.chroma_tolerance
    fov = clip.masks.fov()
    assert not m[~fov].any() and m.sum() > 0.7 * fov.sum()  # the fan, never its black background
    assert 0.2 < fov.mean() < 0.35 and not fov[:, 290:].any()  # the labels and ticks right of the fan


def test_example_palette_color():
    path = examples.get_path("palette_color")
    clip = open_image(path)
    ds = pydicom.dcmread(path)
    assert clip.n_frames == 1 and clip.is_color and clip.shape == (350, 800)
    ref = apply_color_lut(ds.pixel_array, ds)
    assert ref.dtype == np.uint16  # a 16-bit LUT: reduced to its high byte
    np.testing.assert_array_equal(clip.frame(0), (ref >> 8).astype(np.uint8))
    assert clip.bmode_region == (120, 60, 800, 350)  # clamped (MaxY1 = 518 > 350 rows)
    assert clip.spacing_mm == pytest.approx((0.2622878767, 0.2622878767))
    m = clip.process_mask(0)
    f = clip.frame(0).astype(int)
    assert np.all((f.max(-1) - f.min(-1))[m] == 0)  # lossless: exactly grey only
    assert clip.meta["Manufacturer"] == "Philips Medical Systems"


@pytest.mark.parametrize("timing", ["frame_time", "vector", "cine_rate", "display_rate"])
def test_frame_timing_sources(dicom_factory, timing):
    frames = dicom_factory.frames(n_frames=4, colour=False)
    clip = open_image(dicom_factory.dicom("t.dcm", frames, timing=timing, frame_time_ms=25.0))
    assert clip.frame_time_ms == pytest.approx(25.0)


def test_no_timing_gives_none(dicom_factory):
    clip = open_image(dicom_factory.dicom("t.dcm", dicom_factory.frames(n_frames=2, colour=False), timing=None))
    assert clip.frame_time_ms is None


def test_lazy_decoding_and_lru_cache(dicom_factory, monkeypatch):
    frames = dicom_factory.frames(n_frames=20, colour=False, text=False)
    clip = open_image(dicom_factory.dicom("long.dcm", frames, transfer_syntax=RLELossless))
    calls: list[int] = []
    decode = clip._decode

    def counting(i: int) -> np.ndarray:
        calls.append(i)
        return decode(i)

    monkeypatch.setattr(clip, "_decode", counting)
    clip._cache.clear()
    for i in range(20):
        np.testing.assert_array_equal(clip.frame(i), frames[i])
    assert calls == list(range(20))  # one decode per frame, in order
    assert len(clip._cache) <= clip._cache_frames < 20  # never the whole clip
    clip.frame(19)
    clip.frame(-1)
    assert calls[-1] == 19 and len(calls) == 20  # cache hits
    assert not clip.frame(3).flags.writeable
    with pytest.raises(IndexError, match="out of range"):
        clip.frame(20)


@pytest.mark.parametrize("sector", [False, True])
@pytest.mark.parametrize("colour", [True, False])
def test_detected_region_matches_removed_one(dicom_factory, sector, colour):
    frames = dicom_factory.frames(n_frames=3, colour=colour, sector=sector, seed=11)
    with_regions = open_image(dicom_factory.dicom("r.dcm", frames))
    without = open_image(dicom_factory.dicom("n.dcm", frames, region=None))
    assert with_regions.region_source == "dicom" and without.region_source == "detected"
    assert without.spacing_mm is None
    assert box_iou(without.bmode_region, with_regions.bmode_region) >= 0.9


def test_detect_on_real_scanner_clip_without_regions(tmp_path):
    ds = pydicom.dcmread(examples.get_path("ybr_color"))
    del ds.SequenceOfUltrasoundRegions
    path = tmp_path / "noregions.dcm"
    ds.save_as(path)
    clip = open_image(path)
    assert clip.region_source == "detected" and clip.spacing_mm is None
    x0, y0, x1, y1 = clip.bmode_region
    # the fan lies between the left text block (x < 40) and the right column of labels (x > 298)
    assert 38 <= x0 <= 60 and 280 <= x1 <= 298
    assert y0 <= 30 and 190 <= y1 <= 215


def test_detect_rejects_bad_shape():
    with pytest.raises(ValueError, match="frame"):
        detect_bmode_region(np.zeros((4, 5, 6, 7)))
    assert detect_bmode_region(np.zeros((40, 50), np.uint8)) == (0, 0, 50, 40)


def test_process_mask_excludes_colour_text_and_static_overlays(dicom_factory):
    frames = dicom_factory.frames(n_frames=4, colour=True, seed=5)
    x0, y0, x1, y1 = dicom_factory.box
    # a static white caliper cross burned into the grey B-mode image
    cy, cx = y0 + 60, x0 + 20
    frames[:, cy, cx - 4 : cx + 5] = 255
    frames[:, cy - 4 : cy + 5, cx] = 255
    clip = open_image(dicom_factory.dicom("m.dcm", frames))
    m = clip.process_mask(2)
    f = frames[2].astype(int)
    colour = (f.max(-1) - f.min(-1)) > 0
    assert not m[colour].any()
    assert not m[:y0].any() and not m[y1:].any() and not m[:, :x0].any() and not m[:, x1:].any()
    assert not m[cy, cx - 4 : cx + 5].any() and not m[cy - 4 : cy + 5, cx].any()
    grey_inside = ~colour
    grey_inside[:y0] = grey_inside[y1:] = False
    grey_inside[:, :x0] = grey_inside[:, x1:] = False
    # the rest of the B-mode image is processed, but for its saturated (>= 248) speckle, which
    # cannot be told from white graphics in a still, and the factory's flat grey-map floor
    assert m.sum() > 0.75 * grey_inside.sum()


def test_user_region(dicom_factory):
    clip = open_image(dicom_factory.dicom("u.dcm", dicom_factory.frames(n_frames=2, colour=False)))
    clip.bmode_region = (-5, 10, 500, 60)
    assert clip.bmode_region == (0, 10, clip.shape[1], 60) and clip.region_source == "user"
    m = clip.process_mask(0)
    assert not m[:10].any() and not m[60:].any() and m[10:60].mean() > 0.4  # the black margin stays
    with pytest.raises(ValueError, match="empty"):
        clip.bmode_region = (10, 10, 10, 50)


def test_unit_mapping_roundtrip(dicom_factory):
    for kw in ({}, {"bits": 16}, {"photometric": "MONOCHROME1"}, {"photometric": "MONOCHROME1", "bits": 16}):
        clip = open_image(dicom_factory.dicom("x.dcm", dicom_factory.frames(n_frames=2, colour=False), **kw))
        f = clip.frame(1)
        np.testing.assert_array_equal(clip.from_unit(clip.to_unit(f)), f)


def test_png_and_npy_inputs(dicom_factory):
    rgb = dicom_factory.frames(n_frames=3, colour=True)
    grey = rgb[..., 0]
    c = open_image(dicom_factory.png("still.png", rgb[0]))
    assert c.n_frames == 1 and c.is_color and np.array_equal(c.frame(0), rgb[0])
    assert c.region_source == "detected" and box_iou(c.bmode_region, dicom_factory.box) >= 0.9
    c = open_image(dicom_factory.png("grey16.png", grey[0].astype(np.uint16) * 257))
    assert c.frame(0).dtype == np.uint16
    np.testing.assert_allclose(c.gray_frame(0), grey[0] / 255.0, atol=1e-6)
    c = open_image(dicom_factory.npy("stack.npy", grey))
    assert c.n_frames == 3 and not c.is_color and np.array_equal(c.frame(2), grey[2])
    c = open_image(dicom_factory.npy("float.npy", grey.astype(np.float32) / 255.0))
    assert c.frame(0).dtype == np.float32
    np.testing.assert_allclose(c.gray_frame(1), grey[1] / 255.0, atol=1e-6)
    c = open_image(dicom_factory.npy("rgb.npy", rgb))
    assert c.is_color and c.n_frames == 3 and np.array_equal(c.frame(1), rgb[1])
    c = open_image(dicom_factory.npy("one.npy", grey[0]))
    assert c.n_frames == 1


BAD = [
    ("truncated", "truncated"),
    ("truncated_jpeg", "truncated at"),
    ("sr", "Structured Report"),
    ("rt", "radiotherapy"),
    ("no_pixels", "no pixel data"),
    ("mpeg4", "video"),
    ("not_dicom", "not a DICOM file"),
    ("empty_png", "not a readable image"),
    ("corrupt_png", "not a readable image"),
    ("pickle_npy", "not a readable .npy"),
    ("rank_npy", "rank 5"),
    ("dtype_npy", "complex64"),
    ("nan_npy", "NaN"),
]


@pytest.mark.parametrize("kind,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_clear_error(dicom_factory, kind, message):
    path = dicom_factory.bad(kind)
    with pytest.raises(DicomError, match=message) as info:
        open_image(path)
    assert isinstance(info.value, ValueError)
    assert str(path.name) in str(info.value)


def test_missing_decoder_message(dicom_factory, monkeypatch):
    path = dicom_factory.dicom("j2k.dcm", dicom_factory.frames(n_frames=2, colour=False),
                               transfer_syntax=JPEG2000Lossless)
    from pydicom.pixels import decoders

    dec = decoders.JPEG2000LosslessDecoder
    saved = dict(dec._available)
    try:
        dec._available.clear()
        dec._unavailable["pylibjpeg"] = ("pylibjpeg-openjpeg",)
        with pytest.raises(DicomError, match="no decoder for it is installed"):
            open_image(path)
    finally:
        dec._available.update(saved)
        dec._unavailable.pop("pylibjpeg", None)


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(DicomError, match="no such file"):
        open_image(tmp_path / "nope.dcm")
    with pytest.raises(DicomError, match="folder"):
        open_image(tmp_path)


def test_too_small_image(dicom_factory):
    tiny = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(DicomError, match="at least 16x16"):
        open_image(dicom_factory.dicom("tiny.dcm", tiny, region=None))


def test_voi_window_maps_deep_grey(dicom_factory):
    frames = dicom_factory.frames(n_frames=2, colour=False)
    clip = open_image(dicom_factory.dicom("w.dcm", frames, bits=16, WindowCenter=32768, WindowWidth=32768))
    lo, hi = 32768 - 0.5 - 32767 / 2, 32768 - 0.5 + 32767 / 2
    stored = frames[1].astype(np.float64) * 257
    np.testing.assert_allclose(clip.gray_frame(1), np.clip((stored - lo) / (hi - lo), 0, 1), atol=1e-5)
    inside = (stored > lo + 1) & (stored < hi - 1)
    assert inside.any()
    np.testing.assert_array_equal(clip.from_unit(clip.gray_frame(1))[inside], clip.frame(1)[inside])
