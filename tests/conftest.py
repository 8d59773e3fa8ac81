"""Shared test fixtures.

``dicom_factory`` (function scope, writes into ``tmp_path``) makes varied image files:

    def test_x(dicom_factory):
        frames = dicom_factory.frames(n_frames=3)             # (3, H, W, 3) uint8 RGB scene
        path = dicom_factory.dicom("clip.dcm", frames, photometric="YBR_FULL_422",
                                   transfer_syntax=JPEGBaseline8Bit)
        clip = open_image(path)
        assert clip.bmode_region == dicom_factory.box

``frames()`` draws a synthetic scanner screen: log-compressed Rayleigh speckle (with an
anechoic cyst) filling the B-mode box ``factory.box`` (or a sector inscribed in it), burned-in
white text and a grey-scale bar outside it, and, when ``colour=True``, a colour-Doppler patch and
yellow calipers inside it.  ``dicom()`` stores frames in any photometric interpretation
(MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR with 8- or 16-bit LUTs), bit depth
and transfer syntax (uncompressed, RLE, JPEG baseline via OpenCV, JPEG 2000 and JPEG-LS via
pydicom's encoders when installed), with or without SequenceOfUltrasoundRegions and frame
timing.  ``bad(kind)`` writes broken inputs; ``png()`` / ``npy()`` write stills and stacks.
All content is seeded and deterministic.

``make_window(model=None, **kwargs)`` (GUI tests; needs pytest-qt) makes the real main window,
shown, with its settings in ``tmp_path`` and message boxes silenced; ``window`` is
``make_window()``.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
MPEG4_TS = "1.2.840.10008.1.2.4.102"
#: LUT entries 0..PALETTE_GREYS-1 are a grey ramp, the rest are colours.
PALETTE_GREYS = 224


class DicomFactory:
    """Writes synthetic ultrasound files into a folder (see the module docstring)."""

    #: default frame size (H, W) and B-mode box (x0, y0, x1, y1), half-open
    shape = (128, 176)
    box = (28, 20, 148, 116)
    spacing_mm = (0.25, 0.3)

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    # -- pixel content ---------------------------------------------------------------------
    def frames(
        self,
        n_frames: int = 3,
        shape: tuple[int, int] | None = None,
        box: tuple[int, int, int, int] | None = None,
        colour: bool = True,
        text: bool = True,
        sector: bool = False,
        seed: int = 0,
    ) -> np.ndarray:
        """Synthetic screens: (F, H, W, 3) uint8 RGB if ``colour`` else (F, H, W) uint8 grey.

        Only the speckle changes from frame to frame; text, bar, Doppler patch and calipers
        are static.  Grey frames have text and bar but no colour overlays.
        """
        import cv2

        h, w = shape or self.shape
        x0, y0, x1, y1 = box or self.box
        rng = np.random.default_rng(seed)
        bh, bw = y1 - y0, x1 - x0
        yy, xx = np.mgrid[0:bh, 0:bw]
        tissue = 0.6 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
        cyst = (yy - bh * 0.6) ** 2 + (xx - bw * 0.35) ** 2 < (min(bh, bw) * 0.15) ** 2
        tissue[cyst] = 0.02
        if sector:
            # Fan whose bounding box is exactly the region box.
            cx, r = bw / 2.0, float(bh)
            ang = np.arctan2(xx - cx + 0.5, yy + 0.5)
            rad = np.hypot(xx - cx + 0.5, yy + 0.5)
            half = np.arctan2(bw / 2.0, r * 0.75)
            inside = (np.abs(ang) <= half) & (rad <= r)
            inside[0, bw // 2 - 1 : bw // 2 + 1] = True
            inside[:, 0] |= np.abs(yy[:, 0] - r * 0.75) < 2
            inside[:, -1] |= np.abs(yy[:, -1] - r * 0.75) < 2
            inside[-1, bw // 2 - 2 : bw // 2 + 2] = True
        else:
            inside = np.ones((bh, bw), bool)
        out = np.zeros((n_frames, h, w), np.uint8)
        dr = 50.0
        for f in range(n_frames):
            env = np.abs(rng.standard_normal((bh, bw)) + 1j * rng.standard_normal((bh, bw))) / np.sqrt(2)
            env = cv2.GaussianBlur(env.astype(np.float32), (3, 3), 0.7) * tissue
            db = 20 * np.log10(np.maximum(env, 1e-6))
            disp = np.clip((db + dr) / dr, 0, 1)
            disp[~inside] = 0
            # keep the box edge detectable: a faint 1-px floor on the content
            disp[inside] = np.maximum(disp[inside], 30 / 255)
            out[f, y0:y1, x0:x1] = np.rint(disp * 255).astype(np.uint8)
        if text:
            for f in range(n_frames):
                cv2.putText(out[f], "USC 7.5MHz", (2, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
                cv2.putText(out[f], "D4cm G60", (2, h - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
                bar_x = min(w - 6, x1 + 8)
                out[f, y0 : y0 + (y1 - y0) // 2, bar_x : bar_x + 4] = (
                    np.linspace(255, 0, (y1 - y0) // 2)[:, None].astype(np.uint8))
        if not colour:
            return out
        rgb = np.repeat(out[..., None], 3, axis=-1)
        # colour Doppler patch (red/blue), static, inside the region
        py0, px0 = y0 + bh // 5, x0 + bw // 2
        ph, pw = max(6, bh // 5), max(8, bw // 5)
        patch = np.zeros((ph, pw, 3), np.uint8)
        patch[: ph // 2] = (200, 30, 20)
        patch[ph // 2 :] = (20, 60, 210)
        rgb[:, py0 : py0 + ph, px0 : px0 + pw] = patch
        # yellow caliper crosses inside the region
        for cx, cy in ((x0 + bw // 4, y0 + bh // 3), (x0 + 3 * bw // 4, y0 + 2 * bh // 3)):
            rgb[:, cy, cx - 3 : cx + 4] = (255, 220, 0)
            rgb[:, cy - 3 : cy + 4, cx] = (255, 220, 0)
        return rgb

    # -- DICOM ----------------------------------------------------------------------------
    def dicom(
        self,
        name: str,
        frames: np.ndarray,
        photometric: str | None = None,
        transfer_syntax: str = "1.2.840.10008.1.2.1",
        bits: int = 8,
        region: tuple[int, int, int, int] | None | bool = True,
        spacing_mm: tuple[float, float] | None = None,
        timing: str | None = "frame_time",
        frame_time_ms: float = 40.0,
        sop_class: str | None = None,
        palette_bits: int = 8,
        **attrs: Any,
    ) -> Path:
        """Write ``frames`` ((F, H, W[, 3]) uint8 as from :meth:`frames`) as a DICOM file.

        Args:
            photometric: default MONOCHROME2 for grey, RGB for colour frames. MONOCHROME1 stores
                ``max - v``; 16-bit grey (``bits=16``) stores ``v * 257``; PALETTE COLOR maps the
                frames through a LUT (grey ramp + colours) of ``palette_bits`` (8 or 16).
            transfer_syntax: any UID pydicom can encode, plus JPEG baseline (OpenCV encoder,
                4:2:2 chroma for YBR_FULL_422) and MPEG-4 (fake payload, for error tests).
            region: True = ``self.box``; a box; None/False = no SequenceOfUltrasoundRegions.
            timing: "frame_time", "vector", "cine_rate", "display_rate" or None.
            sop_class: default US Multi-frame for F > 1, US Image for one frame.
            **attrs: extra DICOM attributes by keyword.
        """
        import pydicom
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.sequence import Sequence as Seq
        from pydicom.uid import UID, generate_uid

        frames = np.asarray(frames)
        colour = frames.ndim == 4
        n, h, w = frames.shape[:3]
        photometric = photometric or ("RGB" if colour else "MONOCHROME2")
        ts = UID(transfer_syntax)
        sop = sop_class or (US_MULTIFRAME if n > 1 else US_IMAGE)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop
        ds.SOPClassUID = sop
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        ds.Modality = "US"
        ds.PatientName = "TEST^FACTORY"
        ds.PatientID = "F0001"
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.StudyDate = datetime.date(2024, 1, 2).strftime("%Y%m%d")
        ds.SeriesNumber = 3
        ds.InstanceNumber = 1
        ds.SeriesDescription = "factory %s" % name
        ds.Manufacturer = "TestFactory"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
        if region:
            bx = self.box if region is True else region
            item = Dataset()
            item.RegionSpatialFormat = 1
            item.RegionDataType = 1
            item.RegionFlags = 0
            item.RegionLocationMinX0, item.RegionLocationMinY0 = bx[0], bx[1]
            item.RegionLocationMaxX1, item.RegionLocationMaxY1 = bx[2] - 1, bx[3] - 1
            dz, dx = spacing_mm or self.spacing_mm
            item.PhysicalUnitsXDirection = 3
            item.PhysicalUnitsYDirection = 3
            item.PhysicalDeltaX = dx / 10.0
            item.PhysicalDeltaY = dz / 10.0
            # a second, non-tissue region (spectral Doppler strip) the reader must not pick
            strip = Dataset()
            strip.RegionSpatialFormat = 4
            strip.RegionDataType = 3
            strip.RegionFlags = 0
            strip.RegionLocationMinX0, strip.RegionLocationMinY0 = 0, max(0, h - 10)
            strip.RegionLocationMaxX1, strip.RegionLocationMaxY1 = w - 1, h - 1
            ds.SequenceOfUltrasoundRegions = Seq([item, strip])
        if n > 1 or sop == US_MULTIFRAME:
            if timing == "frame_time":
                ds.FrameTime = frame_time_ms
                ds.FrameIncrementPointer = 0x00181063
            elif timing == "vector":
                ds.FrameTimeVector = [0.0] + [frame_time_ms] * (n - 1)
                ds.FrameIncrementPointer = 0x00181065
            elif timing == "cine_rate":
                ds.CineRate = int(round(1000.0 / frame_time_ms))
            elif timing == "display_rate":
                ds.RecommendedDisplayFrameRate = int(round(1000.0 / frame_time_ms))
        for key, value in attrs.items():
            setattr(ds, key, value)

        arr, pi, stored = self._encode_pixels(ds, frames, photometric, bits, palette_bits)
        if ts == pydicom.uid.JPEGBaseline8Bit:
            self._jpeg_baseline(ds, arr, pi)
        elif ts == MPEG4_TS:
            ds.set_pixel_data(arr if n > 1 else arr[0], pi, stored)
            ds.file_meta.TransferSyntaxUID = ts
            ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 64])
            ds["PixelData"].VR = "OB"
        else:
            ds.set_pixel_data(arr if n > 1 else arr[0], pi, stored)
            if ts != pydicom.uid.ExplicitVRLittleEndian:
                kwargs: dict[str, Any] = {}
                if ts == pydicom.uid.JPEGLSNearLossless:
                    kwargs["jls_error"] = 2
                if ts == pydicom.uid.JPEG2000:
                    kwargs["j2k_psnr"] = [50.0]
                ds.compress(ts, **kwargs)
        if n > 1 or sop == US_MULTIFRAME:
            ds.NumberOfFrames = n
        path = self.folder / name
        ds.save_as(path, enforce_file_format=True)
        return path

    def _encode_pixels(self, ds, frames: np.ndarray, photometric: str, bits: int, palette_bits: int):
        """Convert RGB/grey uint8 frames to the stored values of ``photometric``."""
        from pydicom.pixels import convert_color_space

        colour = frames.ndim == 4
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            grey = frames[..., 0] if colour else frames
            if bits == 16:
                grey = grey.astype(np.uint16) * 257
            top = 255 if bits == 8 else 65535
            if photometric == "MONOCHROME1":
                grey = (top - grey.astype(np.int64)).astype(grey.dtype)
            return grey, photometric, bits
        rgb = frames if colour else np.repeat(frames[..., None], 3, axis=-1)
        if photometric == "RGB":
            return rgb, "RGB", 8
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            if ds.file_meta.TransferSyntaxUID.is_encapsulated or photometric == "YBR_FULL":
                return convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL", 8
            return rgb, photometric, 8  # JPEG: the encoder does the YCbCr transform
        if photometric == "PALETTE COLOR":
            lut = self.palette_lut()
            idx = np.zeros(rgb.shape[:-1], np.uint8)
            grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
            idx[grey] = np.rint(rgb[..., 0][grey] / 255.0 * (PALETTE_GREYS - 1)).astype(np.uint8)
            cols = lut[PALETTE_GREYS:].astype(np.int32)
            far = ~grey
            if far.any():
                d = ((rgb[far][:, None, :].astype(np.int32) - cols[None]) ** 2).sum(-1)
                idx[far] = PALETTE_GREYS + np.argmin(d, axis=1)
            scale = 257 if palette_bits == 16 else 1
            for ch, colour_name in enumerate(("Red", "Green", "Blue")):
                desc = [256, 0, palette_bits]
                ds.add_new(f"{colour_name}PaletteColorLookupTableDescriptor", "US", desc)
                data = (lut[:, ch].astype(np.uint16) * scale).astype("<u2" if palette_bits == 16 else np.uint8)
                raw = data.tobytes()
                if palette_bits == 8:
                    raw = data.astype("<u2").tobytes()  # 8-bit entries still sit in 16-bit words
                ds.add_new(f"{colour_name}PaletteColorLookupTableData", "OW", raw)
            return idx, "PALETTE COLOR", 8
        raise ValueError("factory: unsupported photometric %s" % photometric)

    @staticmethod
    def palette_lut() -> np.ndarray:
        """(256, 3) uint8 LUT: a grey ramp then saturated colours (red, blue, yellow, ...)."""
        lut = np.zeros((256, 3), np.uint8)
        ramp = np.rint(np.arange(PALETTE_GREYS) / (PALETTE_GREYS - 1) * 255).astype(np.uint8)
        lut[:PALETTE_GREYS] = ramp[:, None]
        base = np.array([(200, 30, 20), (20, 60, 210), (255, 220, 0), (0, 200, 0)], np.uint8)
        lut[PALETTE_GREYS:] = base[np.arange(256 - PALETTE_GREYS) % len(base)]
        return lut

    @staticmethod
    def _jpeg_baseline(ds, arr: np.ndarray, photometric: str) -> None:
        import cv2
        import pydicom

        frames = arr if arr.ndim == (4 if photometric != "MONOCHROME2" else 3) else arr[None]
        params = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x211111]
        chunks = []
        for f in frames:
            img = f[..., ::-1] if f.ndim == 3 else f
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), params)
            assert ok
            chunks.append(buf.tobytes())
        pi = "YBR_FULL_422" if frames.ndim == 4 else "MONOCHROME2"
        ds.set_pixel_data(frames if len(frames) > 1 else frames[0], "RGB" if pi != "MONOCHROME2" else pi, 8)
        ds.PhotometricInterpretation = pi
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.PixelData = pydicom.encaps.encapsulate(chunks)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"

    @staticmethod
    def encoder_available(transfer_syntax: str) -> bool:
        """True when pydicom can encode ``transfer_syntax`` here (JPEG baseline: OpenCV)."""
        import pydicom
        from pydicom.pixels import get_encoder

        if transfer_syntax == pydicom.uid.JPEGBaseline8Bit or not pydicom.uid.UID(transfer_syntax).is_compressed:
            return True
        try:
            return bool(get_encoder(transfer_syntax).is_available)
        except (NotImplementedError, ValueError):
            return False


    # -- other files ----------------------------------------------------------------------
    def png(self, name: str, image: np.ndarray) -> Path:
        """Write (H, W) grey or (H, W, 3) RGB uint8/uint16 as PNG."""
        import cv2

        img = np.asarray(image)
        path = self.folder / name
        assert cv2.imwrite(str(path), img[..., ::-1] if img.ndim == 3 else img)
        return path

    def npy(self, name: str, array: np.ndarray) -> Path:
        path = self.folder / name
        np.save(path, np.asarray(array), allow_pickle=False)
        return path

    def bad(self, kind: str) -> Path:
        """Broken inputs: truncated, truncated_jpeg, sr, rt, no_pixels, mpeg4, not_dicom,
        empty_png, corrupt_png, pickle_npy, rank_npy, dtype_npy, nan_npy."""
        import pydicom
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import generate_uid

        p = self.folder / ("bad_%s" % kind)
        frames = self.frames(n_frames=3, colour=False, text=False)
        if kind in ("truncated", "truncated_jpeg"):
            ts = pydicom.uid.JPEGBaseline8Bit if kind == "truncated_jpeg" else pydicom.uid.ExplicitVRLittleEndian
            src = self.dicom("full_%s.dcm" % kind, frames, transfer_syntax=ts)
            data = src.read_bytes()
            p = p.with_suffix(".dcm")
            p.write_bytes(data[: len(data) * 2 // 3])
            src.unlink()
            return p
        if kind in ("sr", "rt", "no_pixels"):
            ds = Dataset()
            sop = {"sr": BASIC_TEXT_SR, "rt": RT_STRUCT, "no_pixels": US_IMAGE}[kind]
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = sop
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
            ds.SOPClassUID = sop
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientName = "TEST"
            ds.Modality = {"sr": "SR", "rt": "RTSTRUCT", "no_pixels": "US"}[kind]
            if kind == "no_pixels":
                ds.Rows, ds.Columns = 64, 64
            p = p.with_suffix(".dcm")
            ds.save_as(p, enforce_file_format=True)
            return p
        if kind == "mpeg4":
            return self.dicom("bad_mpeg4.dcm", frames, transfer_syntax=MPEG4_TS)
        if kind == "not_dicom":
            p = p.with_suffix(".dcm")
            p.write_text("this is a text file that someone named .dcm\n" * 20)
            return p
        if kind == "empty_png":
            p = p.with_suffix(".png")
            p.write_bytes(b"")
            return p
        if kind == "corrupt_png":
            good = self.png("good.png", frames[0])
            p = p.with_suffix(".png")
            p.write_bytes(good.read_bytes()[:60])
            return p
        if kind == "pickle_npy":
            p = p.with_suffix(".npy")
            np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            return p
        if kind == "rank_npy":
            return self.npy("bad_rank.npy", np.zeros((2, 2, 32, 32, 2), np.uint8))
        if kind == "dtype_npy":
            return self.npy("bad_dtype.npy", np.zeros((32, 32), np.complex64))
        if kind == "nan_npy":
            a = np.zeros((32, 32), np.float32)
            a[3, 3] = np.nan
            return self.npy("bad_nan.npy", a)
        raise ValueError("unknown bad kind %r" % kind)


@pytest.fixture
def dicom_factory(tmp_path: Path) -> DicomFactory:
    """A :class:`DicomFactory` writing into this test's ``tmp_path``."""
    return DicomFactory(tmp_path)


@pytest.fixture
def file_snapshot():
    """``snap = file_snapshot(path)``; later ``snap.unchanged()`` is True when the file's bytes
    and mtime are as they were (for the never-write-the-source rule)."""

    class _Snap:
        def __init__(self, path: Path) -> None:
            self.path = Path(path)
            self.data = self.path.read_bytes()
            self.mtime = self.path.stat().st_mtime_ns

        def unchanged(self) -> bool:
            return self.path.read_bytes() == self.data and self.path.stat().st_mtime_ns == self.mtime

    return _Snap



@pytest.fixture(autouse=True, scope="session")
def _psf_cache_outside_home(tmp_path_factory):
    """PSF banks built on demand during the tests go to a temporary folder, never to the
    user's cache or to the shipped ``resources/psf``."""
    import simulator.psf as psf

    saved = psf.CACHE_DIR
    psf.CACHE_DIR = tmp_path_factory.mktemp("psf_cache")
    yield
    psf.CACHE_DIR = saved


@pytest.fixture
def make_window(qtbot, tmp_path):
    """``make_window(model=None, auto_despeckle=False, **kwargs)``: ``MainWindow(**kwargs)`` with its
    settings in ``tmp_path / "gui.ini"`` ("Despeckle on open" as given: off unless a test asks),
    message boxes silenced (``message_sink`` discards), ``model`` selected in the model list when
    given, registered with ``qtbot`` and shown."""
    from PySide6.QtCore import QSettings

    from usclean_gui.app.main_window import MainWindow

    def make(model: str | None = None, auto_despeckle: bool = False, **kwargs: Any) -> MainWindow:
        settings = QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat)
        settings.setValue("auto_despeckle", auto_despeckle)
        win = MainWindow(settings=settings, **kwargs)
        win.message_sink = lambda level, text: None
        if model is not None:
            win.set_model(model)
        qtbot.addWidget(win)
        win.show()
        return win

    return make


@pytest.fixture
def window(make_window):
    """The real main window with default settings (see ``make_window``)."""
    return make_window()
