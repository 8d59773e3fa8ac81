"""Test helpers for the DICOM pipeline: simulated speckle with drawn burned-in marks of every kind.

:func:`drawn_marks` draws what scanners burn into the B-mode image (text of several fonts and
sizes, lines 1–3 px wide, caliper crosses, dotted lines, depth ticks, an ROI outline, a body
mark; grey levels from mid-grey to white, optionally coloured) and returns the mask of the
pixels it changed, so a test can measure which fraction of them a pipeline keeps byte-identical.
Used by ``tests/test_marks.py`` and ``benchmarks/marks_kept.py``.
"""
from __future__ import annotations

import numpy as np

#: Grey levels the marks are drawn in (white, light grey, mid grey).
MARK_LEVELS = (255, 210, 170)


def speckle_cine(n_frames: int = 4, size: int = 256, probe: str = "L11-5v", seed: int = 0,
                 sector: bool = False) -> np.ndarray:
    """(F, size, size) uint8 simulated B-mode cine (USClean's fast physics, moving MRI anatomy).

    ``sector``: black out everything outside a fan (apex above the image, 70° wide), as a
    convex or phased probe's scan-converted image looks.
    """
    from simulator.cine import simulate_cine
    from simulator.probes import get_probe

    frames, _, _ = simulate_cine("mri", get_probe(probe), n_frames, seed=seed, size=size)
    if sector:
        frames = frames * fan_mask((size, size))[None]
    return frames.astype(np.uint8)


def fan_mask(shape: tuple[int, int], apex_above: float = 0.25, half_angle_deg: float = 35.0) -> np.ndarray:
    """Bool (H, W): a sector with its apex ``apex_above * H`` above the top row, centred."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ay = -apex_above * h
    ang = np.degrees(np.arctan2(xx - (w - 1) / 2.0, yy - ay))
    rad = np.hypot(xx - (w - 1) / 2.0, yy - ay)
    return (np.abs(ang) <= half_angle_deg) & (rad >= apex_above * h + 4) & (rad <= h - 2 - ay)


def _coverage(shape: tuple[int, int], draw) -> np.ndarray:
    """Float (H, W) coverage in [0, 1] of a shape drawn in 255 by ``draw(canvas)`` on black."""
    canvas = np.zeros(shape, np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255.0


def _paint(img: np.ndarray, cover: np.ndarray, value, aa: bool) -> None:
    """Draw ``value`` (a level, or an RGB triple) where ``cover`` says: blended by coverage
    (anti-aliased) or, without ``aa``, solid where the coverage is at least one half (a bitmap)."""
    a = cover if aa else (cover >= 0.5).astype(np.float32)
    if img.ndim == 3:
        a = a[..., None]
    v = np.asarray(value, dtype=np.float32).reshape((1, 1, -1) if img.ndim == 3 else (1, 1))
    img[...] = np.rint(a * v + (1.0 - a) * img.astype(np.float32)).astype(np.uint8)


def _text_steps(P, lv):
    import cv2

    steps = []
    specs = [("MI 0.9", "FONT_HERSHEY_PLAIN", 0.8, 1), ("TIS 0.7", "FONT_HERSHEY_SIMPLEX", 0.45, 1),
             ("19", "FONT_HERSHEY_DUPLEX", 0.6, 1), ("1.06 cm", "FONT_HERSHEY_PLAIN", 1.2, 2),
             ("Gn 60 C 61", "FONT_HERSHEY_SIMPLEX", 0.35, 1)]
    for k, (text, font, scale, th) in enumerate(specs):
        org = P(12 + 40 * (k % 2), 30 + 22 * k)

        def draw(c, text=text, font=font, scale=scale, th=th, org=org):
            cv2.putText(c, text, org, getattr(cv2, font), scale, 255, th, cv2.LINE_AA)

        steps.append(("text", draw, lv(k), k % 2 == 1))
    return steps


def _line_steps(P, lv, w, h):
    import cv2

    steps = []
    for k, th in enumerate((1, 2, 3)):  # exactly 1, 2 and 3 px wide
        y = P(0, 20 + 12 * k)[1]
        x = P(200 + 12 * k, 0)[0]
        steps.append(("line",
                      lambda c, y=y, th=th: c.__setitem__((slice(y, y + th), slice(P(150, 0)[0], P(240, 0)[0])), 255),
                      lv(k), False))
        steps.append(("line",
                      lambda c, x=x, th=th: c.__setitem__((slice(P(0, 70)[1], P(0, 130)[1]), slice(x, x + th)), 255),
                      lv(k + 1), False))
        steps.append(("line",
                      lambda c, k=k: cv2.line(c, P(130, 150 + 10 * k), P(190, 200 + 10 * k), 255, 1, cv2.LINE_AA),
                      lv(k + 2), k == 1))
    for k in range(6):  # depth ticks along the right edge
        y = int((30 + 36 * k) * h / 256.0)
        steps.append(("tick", lambda c, y=y: cv2.line(c, (w - 8, y), (w - 3, y), 255, 1), lv(0), False))
    steps.append(("tick", lambda c: cv2.fillPoly(c, [np.array([P(246, 100), P(252, 96), P(252, 104)])], 255),
                  lv(0), False))
    return steps


def _graphic_steps(P, lv, colour, rng):
    import cv2

    steps = []
    a, b = P(40, 170), P(110, 215)
    yellow = (255, 220, 0) if colour else lv(0)
    for (cx, cy), kind in ((a, "+"), (b, "+"), (P(230, 230), "x")):
        r = 5
        ends = [((cx - r, cy), (cx + r, cy)), ((cx, cy - r), (cx, cy + r))] if kind == "+" else \
            [((cx - r, cy - r), (cx + r, cy + r)), ((cx - r, cy + r), (cx + r, cy - r))]
        steps.append(("cross", lambda c, ends=ends: [cv2.line(c, p, q, 255, 1) for p, q in ends], yellow, False))
    n = int(np.hypot(b[0] - a[0], b[1] - a[1]) // 4)
    dots = [(int(round(a[0] + t * (b[0] - a[0]))), int(round(a[1] + t * (b[1] - a[1]))), 1 + (rng.random() < 0.5))
            for t in np.linspace(0.12, 0.88, n)]
    steps.append(("dotted", lambda c: [c.__setitem__((slice(y, y + s), slice(x, x + s)), 255) for x, y, s in dots],
                  lv(1), False))
    green = (0, 200, 0) if colour else lv(2)
    steps.append(("outline", lambda c: cv2.rectangle(c, P(60, 95), P(120, 140), 255, 1), green, False))
    steps.append(("body mark", lambda c: (cv2.ellipse(c, P(225, 175), (10, 6), 0, 0, 360, 255, 1),
                                          cv2.line(c, P(218, 172), P(232, 178), 255, 2)), lv(1), False))
    return steps


def draw_marks(frame: np.ndarray, seed: int = 0, colour: bool = False,
               kinds: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one of each kind of mark on a copy of ``frame`` ((H, W) uint8, H, W >= 192).

    Text in three fonts and five sizes, bitmap and anti-aliased (blended with the image as
    scanners do); lines exactly 1, 2 and 3 px wide (horizontal, vertical, diagonal); depth ticks
    and a focus marker; caliper crosses joined by a dotted line; an ROI outline; a body mark.
    Levels cycle through :data:`MARK_LEVELS`; with ``colour`` the calipers are yellow and the
    outline green.

    Returns:
        ``(marked, changed)``: the marked frame ((H, W) uint8, or (H, W, 3) with ``colour``) and
        the bool mask of changed pixels.  ``kinds``, when given, receives one mask per kind.
    """
    h, w = frame.shape
    rng = np.random.default_rng(seed)
    img = np.repeat(frame[..., None], 3, axis=2).copy() if colour else frame.copy()
    lv = lambda k: (MARK_LEVELS[k % 3],) * 3 if colour else MARK_LEVELS[k % 3]  # noqa: E731
    P = lambda x, y: (int(x * w / 256.0), int(y * h / 256.0))  # noqa: E731
    for kind, draw, value, aa in _text_steps(P, lv) + _line_steps(P, lv, w, h) + _graphic_steps(P, lv, colour, rng):
        before = img.copy()
        _paint(img, _coverage((h, w), draw), value, aa)
        if kinds is not None:
            diff = np.any(img != before, axis=-1) if colour else img != before
            kinds[kind] = kinds.get(kind, np.zeros((h, w), bool)) | diff
    ref = np.repeat(frame[..., None], 3, axis=2) if colour else frame
    changed = np.any(img != ref, axis=-1) if colour else img != ref
    return img, changed


def kept_fraction(source: np.ndarray, output: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of ``mask`` pixels whose value in ``output`` equals ``source`` exactly."""
    same = source == output
    if same.ndim == 3:
        same = same.all(axis=-1)
    return float(same[mask].mean()) if mask.any() else 1.0


# -- fuzzing ------------------------------------------------------------------------------------
#: Element mutations: (keyword, value) written into a seed dataset before it is saved.
ELEMENT_MUTATIONS = (
    ("Rows", [64, 64]), ("Rows", ""), ("Rows", 0), ("Rows", 65535), ("Columns", [1, 2, 3]), ("Columns", ""),
    ("BitsAllocated", 12), ("BitsAllocated", [8, 8]), ("BitsStored", 65535), ("BitsStored", 0), ("BitsStored", ""),
    ("HighBit", 99), ("SamplesPerPixel", 2), ("SamplesPerPixel", ""), ("PixelRepresentation", 7),
    ("PhotometricInterpretation", "YBR_WHATEVER"), ("PhotometricInterpretation", ["RGB", "MONOCHROME2"]),
    ("PhotometricInterpretation", ""), ("NumberOfFrames", "999999999"), ("NumberOfFrames", "-3"),
    ("NumberOfFrames", "abc"), ("NumberOfFrames", "0"), ("PlanarConfiguration", 5), ("WindowCenter", "abc"),
    ("WindowWidth", "0"), ("FrameTime", "nan"), ("FrameIncrementPointer", 0x12345678), ("CineRate", "-5"),
    ("PixelSpacing", ["inf", "1"]), ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.11"),
)
REGION_MUTATIONS = (
    ("PhysicalDeltaX", float("inf")), ("PhysicalDeltaY", float("nan")), ("PhysicalDeltaX", -1.0),
    ("RegionLocationMinX0", 4000000000), ("RegionLocationMaxY1", 0), ("RegionDataType", 99),
    ("RegionSpatialFormat", None),
)


def _flip(data: bytearray, rng: np.random.Generator, lo: int, hi: int) -> None:
    for _ in range(int(rng.integers(1, 9))):
        data[int(rng.integers(lo, max(lo + 1, hi)))] ^= 1 << int(rng.integers(0, 8))


def _tag_offsets(data: bytes, limit: int) -> list[int]:
    """Offsets of plausible explicit-VR element headers (an upper-case VR after a tag)."""
    out = []
    for i in range(132, min(len(data), limit) - 8):
        if 65 <= data[i + 4] <= 90 and 65 <= data[i + 5] <= 90:
            out.append(i)
    return out


def byte_mutant(data: bytes, rng: np.random.Generator, header_end: int) -> tuple[str, bytes]:
    """One mutant of a file's bytes: flipped bits (header or anywhere), a truncation, a broken
    VR or element length, or a non-DICOM file."""
    kind = ["flip_header", "flip_any", "truncate", "vr", "length", "not_dicom"][int(rng.integers(0, 6))]
    out = bytearray(data)
    if kind == "flip_header":
        _flip(out, rng, 128, header_end)
    elif kind == "flip_any":
        _flip(out, rng, 0, len(out))
    elif kind == "truncate":
        out = out[:int(rng.integers(0, len(out)))]
    elif kind in ("vr", "length"):
        tags = _tag_offsets(data, header_end)
        if not tags:
            return byte_mutant(data, rng, header_end)
        i = tags[int(rng.integers(0, len(tags)))]
        if kind == "vr":
            out[i + 4:i + 6] = bytes(rng.integers(65, 91, 2).tolist())
        else:
            long_vr = bytes(out[i + 4:i + 6]) in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL",
                                                  b"OV")
            size, at = (4, i + 8) if long_vr else (2, i + 6)
            value = int(rng.choice([0, 1, 3, 0xFFFF, 0xFFFFFFF0, int(rng.integers(0, 2**31))])) % (256**size)
            out[at:at + size] = value.to_bytes(size, "little")
    else:
        choice = int(rng.integers(0, 4))
        out = bytearray([b"", rng.bytes(int(rng.integers(1, 5000))), b"\x00" * 128 + b"DICM" + rng.bytes(300),
                         b"not a dicom file\n" * 40][choice])
    return kind, bytes(out)


def element_mutant(path, rng: np.random.Generator, out_path) -> str:
    """Write a copy of the DICOM file ``path`` with one image or region element corrupted."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        regions = ds.get("SequenceOfUltrasoundRegions", None)
        if regions and rng.random() < 0.3:
            keyword, value = REGION_MUTATIONS[int(rng.integers(0, len(REGION_MUTATIONS)))]
            setattr(regions[0], keyword, value)
        elif rng.random() < 0.1:  # a multi-valued transfer syntax: pydicom cannot write one, patch the bytes
            data = bytearray(open(path, "rb").read())
            ts = str(ds.file_meta.TransferSyntaxUID).encode()
            at = data.find(ts)
            data[at + 3] = ord("\\")
            open(out_path, "wb").write(bytes(data))
            return "element TransferSyntaxUID=%r" % bytes(data[at:at + len(ts)])
        else:
            keyword, value = ELEMENT_MUTATIONS[int(rng.integers(0, len(ELEMENT_MUTATIONS)))]
            setattr(ds, keyword, value)
        ds.save_as(out_path)
    return "element %s=%r" % (keyword, value)


def read_like_a_user(path, frames: int = 3) -> None:
    """What opening a file in USClean does: open it, read up to ``frames`` frames (first, middle,
    last) and their process masks (regions, fields of view, marks)."""
    from usclean_gui.dicomio import open_image

    clip = open_image(path)
    for i in clip.sample_indices(frames):
        clip.frame(i)
        clip.gray_frame(i)
        clip.process_mask(i)


def fuzz_outcome(path, timeout_s: float = 20.0) -> tuple[str, str]:
    """``(outcome, detail)`` of :func:`read_like_a_user` on ``path``: ``"ok"``; ``"error"`` (a
    DicomError naming the file); ``"unnamed"`` (a DicomError without the file's name);
    ``"unexpected"`` (a DicomError from the last-resort wrapper); ``"crash"`` (any other exception);
    ``"hang"`` (over ``timeout_s``, measured with SIGALRM: main thread only)."""
    import signal
    import time

    from usclean_gui.dicomio import DicomError

    class _Hang(BaseException):
        pass

    def alarm(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, timeout_s)  # an outer timer (pytest-timeout) is put back
    start = time.monotonic()
    try:
        read_like_a_user(path)
        return "ok", ""
    except _Hang:
        return "hang", ""
    except DicomError as exc:
        if exc.unexpected:
            return "unexpected", str(exc)
        return ("error" if str(path) in str(exc) else "unnamed"), str(exc)
    except Exception as exc:  # what the fuzz test is looking for
        return "crash", "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, outer - (time.monotonic() - start)))
