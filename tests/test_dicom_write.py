"""Writing: write_cine, write_derived (round trips), write_png / write_npy, atomicity."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from usclean_gui.dicomio import (
    UNCERTAINTY_FULL_SCALE,
    DicomError,
    compose_frame,
    open_image,
    write_cine,
    write_derived,
    write_npy,
    write_png,
)

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


# -- write_cine ------------------------------------------------------------------------------
def test_write_cine_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 48, 64), dtype=np.uint8)
    out = write_cine(frames, (0.2, 0.3), 25.0, tmp_path / "sim.dcm", description="cyst L11-5v",
                     Manufacturer="USClean simulator", TransducerData=["L11-5v"])
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == US_MULTIFRAME == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8 and ds.BitsStored == 8
    assert int(ds.NumberOfFrames) == 6 and ds.Rows == 48 and ds.Columns == 64
    assert ds.PatientName == "SIMULATED" and ds.SeriesDescription == "cyst L11-5v"
    assert ds.Manufacturer == "USClean simulator" and ds.TransducerData == "L11-5v"
    assert float(ds.FrameTime) == 25.0 and ds.FrameIncrementPointer == 0x00181063 and int(ds.CineRate) == 40
    (reg,) = ds.SequenceOfUltrasoundRegions
    assert (reg.RegionLocationMinX0, reg.RegionLocationMinY0,
            reg.RegionLocationMaxX1, reg.RegionLocationMaxY1) == (0, 0, 63, 47)
    assert reg.RegionSpatialFormat == 1 and reg.RegionDataType == 1
    assert reg.PhysicalUnitsXDirection == 3 == reg.PhysicalUnitsYDirection
    assert reg.PhysicalDeltaX == pytest.approx(0.03) and reg.PhysicalDeltaY == pytest.approx(0.02)
    np.testing.assert_array_equal(ds.pixel_array, frames)
    for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
        assert pydicom.uid.UID(uid).is_valid
    clip = open_image(out)
    assert clip.spacing_mm == pytest.approx((0.2, 0.3)) and clip.frame_time_ms == pytest.approx(25.0)
    assert clip.bmode_region == (0, 0, 64, 48) and clip.n_frames == 6
    np.testing.assert_allclose(clip.gray_frame(3), frames[3] / 255.0, atol=1e-6)
    again = pydicom.dcmread(write_cine(frames, (0.2, 0.3), 25.0, tmp_path / "sim2.dcm"))
    assert again.SOPInstanceUID != ds.SOPInstanceUID and again.SeriesInstanceUID != ds.SeriesInstanceUID
    assert _leftovers(tmp_path) == []


def test_write_cine_single_frame(tmp_path):
    out = write_cine(np.full((20, 30), 7, np.uint8), (0.1, 0.1), 50.0, tmp_path / "one.dcm")
    ds = pydicom.dcmread(out)
    assert int(ds.NumberOfFrames) == 1 and ds.pixel_array.shape == (20, 30)


@pytest.mark.parametrize(
    "frames,spacing,ft,kw,message",
    [
        (np.zeros((2, 20, 20), np.float32), (0.1, 0.1), 20, {}, "uint8"),
        (np.zeros((2, 2, 20, 20), np.uint8), (0.1, 0.1), 20, {}, "shape"),
        (np.zeros((2, 20, 20), np.uint8), (0.0, 0.1), 20, {}, "spacing"),
        (np.zeros((2, 20, 20), np.uint8), (0.1, 0.1), float("nan"), {}, "frame_time"),
        (np.zeros((2, 20, 20), np.uint8), (0.1, 0.1), 20, {"NotAKeyword": 1}, "not a DICOM keyword"),
    ],
)
def test_write_cine_rejects_bad_input(tmp_path, frames, spacing, ft, kw, message):
    with pytest.raises(ValueError, match=message):
        write_cine(frames, spacing, ft, tmp_path / "x.dcm", **kw)
    assert not (tmp_path / "x.dcm").exists() and _leftovers(tmp_path) == []


# -- write_derived -----------------------------------------------------------------------------
def _processed(clip, indices, crop=False):
    """Deterministic 'despeckled' frames: a smoothed, inverted grey image."""
    out = []
    x0, y0, x1, y1 = clip.bmode_region
    for i in indices:
        g = 1.0 - clip.gray_frame(i)
        out.append(g[y0:y1, x0:x1] if crop else g)
    return np.stack(out).astype(np.float32)


def _check_derived(src_clip, out_path, indices, processed, crop=False):
    src_ds = src_clip.dataset
    ds = pydicom.dcmread(out_path)
    assert ds.SOPClassUID == src_ds.SOPClassUID
    assert ds.StudyInstanceUID == src_ds.StudyInstanceUID
    assert ds.SeriesInstanceUID != src_ds.SeriesInstanceUID
    assert ds.SOPInstanceUID != src_ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert "tiny-model" in ds.DerivationDescription
    (ref,) = ds.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == src_ds.SOPInstanceUID and ref.ReferencedSOPClassUID == src_ds.SOPClassUID
    (purpose,) = ref.PurposeOfReferenceCodeSequence
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    assert ds.LossyImageCompression == ("01" if src_clip.lossy else "00")
    if "SequenceOfUltrasoundRegions" in src_ds:
        assert ds.SequenceOfUltrasoundRegions == src_ds.SequenceOfUltrasoundRegions
    for key in ("FrameTime", "FrameIncrementPointer", "CineRate"):
        if key in src_ds:
            assert ds[key].value == src_ds[key].value
    if src_clip.is_color:
        assert ds.PhotometricInterpretation == "RGB"
    else:
        assert ds.PhotometricInterpretation == src_ds.PhotometricInterpretation

    out = open_image(out_path)
    assert out.n_frames == len(indices) and out.shape == src_clip.shape
    x0, y0, x1, y1 = src_clip.bmode_region
    for k, i in enumerate(indices):
        a, b, m = src_clip.frame(i), out.frame(k), src_clip.process_mask(i)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(b[~m], a[~m])  # text, colour, outside: byte-identical
        full = np.zeros(src_clip.shape, np.float32)
        if crop:
            full[y0:y1, x0:x1] = processed[k]
        else:
            full = processed[k]
        expected = src_clip.from_unit(full[m])
        got = b[m]
        if b.ndim == 3:
            assert (np.array_equal(got[:, 0], expected) and np.array_equal(got[:, 1], expected)
                    and np.array_equal(got[:, 2], expected))
        else:
            np.testing.assert_array_equal(got, expected)
        assert m.sum() > 0 and (b[m] != a[m]).any()


@pytest.mark.parametrize("example", ["ybr_color", "palette_color"])
def test_derived_from_real_examples(tmp_path, file_snapshot, example):
    src = tmp_path / ("src_%s.dcm" % example)
    shutil.copyfile(examples.get_path(example), src)
    snap = file_snapshot(src)
    clip = open_image(src)
    indices = [2, 3, 4] if clip.n_frames > 1 else [0]
    processed = _processed(clip, indices)
    out = write_derived(clip, processed, tmp_path / "out.dcm",
                        "model tiny-model; sampler posterior; steps 4; members 2", frame_indices=indices)
    _check_derived(clip, out, indices, processed)
    assert snap.unchanged()
    ds = pydicom.dcmread(out)
    if clip.n_frames > 1:
        assert list(ds.SourceImageSequence[0].ReferencedFrameNumber) == [3, 4, 5]
        assert ds.LossyImageCompression == "01"
    assert _leftovers(tmp_path) == []


VARIANTS = [
    ("rgb_rle", True, {"transfer_syntax": RLELossless}),
    ("ybr_jpeg", True, {"photometric": "YBR_FULL_422", "transfer_syntax": JPEGBaseline8Bit}),
    ("palette16", True, {"photometric": "PALETTE COLOR", "palette_bits": 16}),
    ("mono2_16", False, {"bits": 16}),
    ("mono1_8", False, {"photometric": "MONOCHROME1"}),
    ("mono2_vector", False, {"timing": "vector"}),
]


@pytest.mark.parametrize("name,colour,kw", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("crop", [False, True], ids=["full", "crop"])
def test_derived_roundtrip_variants(dicom_factory, file_snapshot, tmp_path, name, colour, kw, crop):
    src = dicom_factory.dicom(name + ".dcm", dicom_factory.frames(n_frames=4, colour=colour, seed=2), **kw)
    snap = file_snapshot(src)
    clip = open_image(src)
    indices = [1, 2, 3]
    processed = _processed(clip, indices, crop=crop)
    out = write_derived(clip, processed, tmp_path / "derived.dcm", "model tiny-model; steps 4", frame_indices=indices)
    _check_derived(clip, out, indices, processed, crop=crop)
    assert snap.unchanged()
    ds = pydicom.dcmread(out)
    if "FrameTimeVector" in clip.dataset:
        assert [float(v) for v in ds.FrameTimeVector] == [0.0, 40.0, 40.0]


def test_derived_uncertainty_series(dicom_factory, tmp_path):
    clip = open_image(dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=2, colour=True)))
    std = np.full((2,) + clip.shape, 0.05, np.float32)
    out = write_derived(clip, std, tmp_path / "std.dcm", "model tiny-model", uncertainty=True)
    ds = pydicom.dcmread(out)
    assert (ds.PhotometricInterpretation == "MONOCHROME2"
            and list(ds.ImageType) == ["DERIVED", "SECONDARY", "UNCERTAINTY"])
    assert "std" in ds.DerivationDescription
    px = ds.pixel_array
    m = clip.process_mask(0)
    assert np.all(px[0][m] == round(0.05 / UNCERTAINTY_FULL_SCALE * 255)) and np.all(px[0][~m] == 0)
    other = pydicom.dcmread(write_derived(clip, std, tmp_path / "std2.dcm", "x", uncertainty=True))
    assert other.SeriesInstanceUID != ds.SeriesInstanceUID


def test_derived_never_overwrites_source(dicom_factory, file_snapshot):
    src = dicom_factory.dicom("s.dcm", dicom_factory.frames(n_frames=2, colour=False))
    snap = file_snapshot(src)
    clip = open_image(src)
    with pytest.raises(DicomError, match="source"):
        write_derived(clip, _processed(clip, [0, 1]), src, "x")
    assert snap.unchanged() and _leftovers(src.parent) == []


def test_failed_write_leaves_nothing(dicom_factory, monkeypatch, tmp_path):
    clip = open_image(dicom_factory.dicom("s.dcm", dicom_factory.frames(n_frames=2, colour=False)))
    target = tmp_path / "existing.dcm"
    target.write_bytes(b"old content")

    def boom(path, ds, *a, **k):
        open(path, "wb").write(b"half a file")
        raise OSError("disk full")

    import usclean_gui.dicomio.writer as writer

    monkeypatch.setattr(writer, "dcmwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        write_derived(clip, _processed(clip, [0, 1]), target, "x")
    assert target.read_bytes() == b"old content" and _leftovers(tmp_path) == []


def test_streamed_writer_fails_midway_leaving_nothing(dicom_factory, tmp_path):
    from usclean_gui.dicomio import DerivedWriter

    clip = open_image(dicom_factory.dicom("s.dcm", dicom_factory.frames(n_frames=3, colour=False)))
    target = tmp_path / "existing.dcm"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="engine died"):
        with DerivedWriter(clip, target, "x", [0, 1, 2]) as w:
            w.add(clip.frame(0))
            raise RuntimeError("engine died")
    with pytest.raises(ValueError, match="2 of 3 frames"):
        with DerivedWriter(clip, target, "x", [0, 1, 2]) as w:
            w.add(clip.frame(0))
            w.add(clip.frame(1))
    assert target.read_bytes() == b"old content" and _leftovers(tmp_path) == []
    with DerivedWriter(clip, target, "x", [0, 1, 2]) as w:
        for i in range(3):
            w.add(clip.frame(i))
    np.testing.assert_array_equal(pydicom.dcmread(target).pixel_array, np.stack([clip.frame(i) for i in range(3)]))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "frames,indices,message",
    [
        (np.zeros((2, 5, 5), np.float32), [0, 1], "shape"),
        (np.zeros((2, 128, 176), np.uint8), [0, 1], "float"),
        (np.full((2, 128, 176), np.nan, np.float32), [0, 1], "NaN"),
        (np.zeros((2, 128, 176), np.float32), [0, 9], "indices"),
        (np.zeros((2, 128, 176), np.float32), [0], "frame"),
    ],
)
def test_derived_rejects_bad_frames(dicom_factory, tmp_path, frames, indices, message):
    clip = open_image(dicom_factory.dicom("s.dcm", dicom_factory.frames(n_frames=3, colour=False)))
    with pytest.raises(ValueError, match=message):
        write_derived(clip, frames, tmp_path / "o.dcm", "x", frame_indices=indices)
    assert not (tmp_path / "o.dcm").exists()


def test_derived_from_png_and_npy(dicom_factory, tmp_path):
    rgb = dicom_factory.frames(n_frames=3, colour=True)
    clip = open_image(dicom_factory.png("still.png", rgb[0]))
    out = write_derived(clip, _processed(clip, [0]), tmp_path / "from_png.dcm", "model tiny-model")
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.PhotometricInterpretation == "RGB"
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] and "still.png" in ds.DerivationDescription
    m = clip.process_mask(0)
    np.testing.assert_array_equal(ds.pixel_array[~m], rgb[0][~m])
    stack = open_image(dicom_factory.npy("stack.npy", rgb[..., 0]))
    out = write_derived(stack, _processed(stack, [0, 1, 2]), tmp_path / "from_npy.dcm", "model tiny-model")
    ds = pydicom.dcmread(out)
    assert int(ds.NumberOfFrames) == 3 and ds.PhotometricInterpretation == "MONOCHROME2"


def test_compose_png_npy_writers(dicom_factory, tmp_path, file_snapshot):
    src = dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=2, colour=True))
    clip = open_image(src)
    img = compose_frame(clip, 1, _processed(clip, [1])[0])
    png = write_png(tmp_path / "o.png", img)
    back = open_image(png)
    np.testing.assert_array_equal(back.frame(0), img)
    stack = np.stack([clip.gray_frame(0), clip.gray_frame(1)])
    npy = write_npy(tmp_path / "o.npy", stack)
    np.testing.assert_array_equal(np.load(npy), stack)
    with pytest.raises(DicomError, match="source"):
        write_png(src, img, protect=(src,))
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "n.png", np.full((20, 20), np.nan))
    with pytest.raises(DicomError, match="does not exist"):
        write_npy(tmp_path / "no" / "such" / "x.npy", stack)
    assert _leftovers(tmp_path) == []
