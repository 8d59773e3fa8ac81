"""Reading a DICOM header and checking, element by element, which image it describes.

Header interpretation only, separate from pixel access (:mod:`.pixels`).  The format math is
pydicom's (:func:`~pydicom.pixels.utils.get_expected_length`, :func:`get_nr_frames`, the
transfer syntax's own properties); what this module adds is the checking: every element the
image depends on is read inside a guard, so any failure (a lazily decoded element with a broken
VR, a multi-valued or empty ``Rows``, ``BitsStored = 65535``, a Deflated stream that does not
inflate, a length beyond the end of the file) becomes a :class:`DicomError` naming the file,
the element and what is wrong.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID, ImplicitVRLittleEndian

from .errors import DicomError, reason, size_words

#: Element values larger than this are read from the file only when used (never the pixel data).
DEFER_BYTES = 64 * 1024
MIN_SIDE = 16
MAX_FRAMES = 100_000
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
#: Samples per pixel of each photometric interpretation USClean reads.
PHOTOMETRIC_SAMPLES = {
    "MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3,
    "YBR_FULL_422": 3, "YBR_RCT": 3, "YBR_ICT": 3, "YBR_PARTIAL_420": 3,
}
_VIDEO_TS_PREFIX = "1.2.840.10008.1.2.4.10"  # MPEG-2, MPEG-4 AVC, HEVC (…4.100 to …4.108)
_SOP_KINDS = (
    ("1.2.840.10008.5.1.4.1.1.88.", "a Structured Report (SR)"),
    ("1.2.840.10008.5.1.4.1.1.481.", "a radiotherapy (RT) object"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF/CDA)"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a waveform"),
    ("1.2.840.10008.5.1.4.1.1.66", "a raw data / registration / segmentation object"),
)


@dataclass(frozen=True)
class ImageHeader:
    """The checked image attributes of a DICOM file (see :func:`image_header`)."""

    transfer_syntax: UID
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    expected_bytes: int  # native pixel data: pydicom's get_expected_length; 0 if encapsulated

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.columns)

    @property
    def is_color(self) -> bool:
        return self.samples == 3 or self.photometric == "PALETTE COLOR"


# -- guarded element access ------------------------------------------------------------------
def element_name(keyword_or_tag: str | int) -> str:
    """``"Number of Frames element (0028,0008)"`` for a keyword or a tag."""
    tag = Tag(tag_for_keyword(keyword_or_tag) if isinstance(keyword_or_tag, str) else keyword_or_tag)
    try:
        name = dictionary_description(tag)
    except KeyError:
        name = "private" if tag.is_private else "unknown"
    return "%s element (%04X,%04X)" % (name, tag.group, tag.element)


def _damaged(path: Path, what: str, problem: str) -> DicomError:
    return DicomError("%s is damaged: %s %s; the image cannot be read" % (path, what, problem))


def guarded(path: Path, what: str, read: Callable[[], Any]) -> Any:
    """``read()``, with any exception turned into a DicomError about ``what`` in ``path``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except DicomError:
        raise
    except MemoryError as exc:
        raise _damaged(path, what, "claims more memory than the file holds") from exc
    except Exception as exc:  # pydicom raises a dozen types for a broken value
        raise _damaged(path, what, "cannot be read (%s)" % reason(exc)) from exc


def value_of(ds, keyword: str, path: Path, default: Any = None) -> Any:
    """The value of ``ds.<keyword>``, ``default`` when absent or empty; DicomError if unreadable."""
    def read() -> Any:
        if keyword not in ds:
            return default
        v = ds[keyword].value
        return default if v is None or v == "" else v

    return guarded(path, "its " + element_name(keyword), read)


def single(value: Any, path: Path, keyword: str) -> Any:
    """One value of a possibly multi-valued element (DicomError when it holds several)."""
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) != 1:
            raise _damaged(path, "its " + element_name(keyword), "holds %d values where one is expected" % len(value))
        return value[0]
    return value


def int_of(ds, keyword: str, path: Path, lo: int, hi: int, default: int | None = None) -> int:
    """A single integer element within ``lo..hi`` (DicomError naming it otherwise)."""
    raw = single(value_of(ds, keyword, path, default), path, keyword)
    if raw is None:
        raise DicomError("%s lacks %s, so its pixels cannot be read" % (path, element_name(keyword)))
    try:
        v = float(raw)
        ok = v == int(v)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise _damaged(path, "its " + element_name(keyword), "holds %r, which is not a whole number" % (raw,))
    if not lo <= int(v) <= hi:
        raise _damaged(path, "its " + element_name(keyword), "is %d; it must lie between %d and %d" % (v, lo, hi))
    return int(v)


def text_of(ds, keyword: str, path: Path, default: str | None = None) -> str:
    raw = single(value_of(ds, keyword, path, default), path, keyword)
    if raw is None:
        raise DicomError("%s lacks %s, so its pixels cannot be read" % (path, element_name(keyword)))
    return str(raw).strip().upper()


# -- the file ---------------------------------------------------------------------------------
def transfer_syntax(file_meta, path: Path) -> UID:
    """The file's transfer syntax, checked (Implicit VR Little Endian when none is given)."""
    raw = single(value_of(file_meta, "TransferSyntaxUID", path), path, "TransferSyntaxUID")
    if raw is None:
        return ImplicitVRLittleEndian
    uid = guarded(path, "its " + element_name("TransferSyntaxUID"), lambda: UID(str(raw).strip().rstrip("\x00")))
    what = "its " + element_name("TransferSyntaxUID")
    if not uid.is_valid:
        raise _damaged(path, what, "holds %r, which is not a UID" % str(raw)[:64])
    if uid.is_private or not uid.is_transfer_syntax:
        raise DicomError("%s: %s %s is not a DICOM transfer syntax USClean knows; export the clip "
                         "again uncompressed, RLE or JPEG" % (path, element_name("TransferSyntaxUID"), uid))
    if str(uid).startswith(_VIDEO_TS_PREFIX):
        raise DicomError("%s is stored as compressed video (%s), which USClean cannot decode; export the clip "
                         "from the scanner or PACS uncompressed, RLE or JPEG" % (path, uid.name))
    return uid


class _Records(logging.Handler):
    """Collects what pydicom logs while a file is read (it logs, rather than raises, an end of
    file inside compressed pixel data and then drops the element)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_dataset(path: Path):
    """``(dataset, cut_off)``: the file's dataset, the pixel data left in the file (a Deflated
    file is inflated in memory), and whether pydicom met the end of the file inside an element.

    Raises:
        DicomError: not DICOM, a broken file meta group or transfer syntax, a header that cannot
            be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_file_meta_info

    def parse(read: Callable[[], Any], what: str) -> Any:
        try:
            return guarded(path, what, read)
        except DicomError as exc:
            if isinstance(exc.__cause__, InvalidDicomError):
                raise DicomError("%s is not a DICOM file (no DICOM header found)" % path) from exc.__cause__
            raise

    meta = parse(lambda: read_file_meta_info(path), "its file meta information (group 0002)")
    ts = transfer_syntax(meta, path)
    defer = None if ts.is_deflated else DEFER_BYTES  # a deferred read cannot seek in a deflated stream
    records = _Records()
    logger = logging.getLogger("pydicom")
    logger.addHandler(records)
    try:
        ds = parse(lambda: pydicom.dcmread(path, defer_size=defer), "its DICOM header")
    finally:
        logger.removeHandler(records)
    return ds, any("end of file" in m.lower() for m in records.messages)


def describe_sop(ds) -> str | None:
    """What kind of non-image object the dataset is (SR, RT, ...), or None."""
    uid = str(ds.get("SOPClassUID", "") if "SOPClassUID" in ds else "")
    for prefix, what in _SOP_KINDS:
        if uid.startswith(prefix):
            return what
    return None


def decode_all(ds, path: Path) -> None:
    """Decode every element but the pixel data now, nested sequences included, so that a broken
    value fails here with its name rather than later (when it is copied into an output)."""
    for tag in list(ds.keys()):
        if tag == PIXEL_DATA:
            continue
        elem = guarded(path, "its " + element_name(tag), lambda tag=tag: ds[tag])
        if elem.VR == "SQ":
            for item in guarded(path, "its " + element_name(tag), lambda elem=elem: list(elem.value)):
                decode_all(item, path)


def image_header(ds, path: Path) -> ImageHeader:
    """Check the Image Pixel attributes of ``ds`` and return them.

    Raises:
        DicomError: a missing, unreadable or out-of-range element, or a combination USClean
            does not read (1- or 32-bit pixels, an unsupported photometric interpretation).
    """
    from pydicom.pixels.utils import get_expected_length, get_nr_frames

    ts = transfer_syntax(getattr(ds, "file_meta", {}), path)
    pi = text_of(ds, "PhotometricInterpretation", path)
    if pi not in PHOTOMETRIC_SAMPLES:
        raise DicomError("%s: photometric interpretation %s is not supported" % (path, pi))
    spp = int_of(ds, "SamplesPerPixel", path, 1, 4, default=PHOTOMETRIC_SAMPLES[pi])
    if spp != PHOTOMETRIC_SAMPLES[pi]:
        raise _damaged(path, "its " + element_name("SamplesPerPixel"), "is %d, but %s images have %d"
                       % (spp, pi, PHOTOMETRIC_SAMPLES[pi]))
    rows = int_of(ds, "Rows", path, 1, 65535)
    cols = int_of(ds, "Columns", path, 1, 65535)
    check_size(rows, cols, str(path))
    bits = int_of(ds, "BitsAllocated", path, 1, 64)
    if bits not in (8, 16):
        raise DicomError("%s: %d-bit pixels are not supported (8 or 16 bit)" % (path, bits))
    stored = int_of(ds, "BitsStored", path, 1, bits)
    signed = int_of(ds, "PixelRepresentation", path, 0, 1, default=0) == 1
    if spp == 3:
        int_of(ds, "PlanarConfiguration", path, 0, 1, default=0)
    int_of(ds, "NumberOfFrames", path, 0, MAX_FRAMES, default=1)
    frames = guarded(path, "its " + element_name("NumberOfFrames"), lambda: int(get_nr_frames(ds, warn=False)))
    expected = 0 if ts.is_encapsulated else guarded(path, "its image attributes", lambda: int(get_expected_length(ds)))
    return ImageHeader(ts, rows, cols, frames, spp, bits, stored, signed, pi, expected)


def check_size(h: int, w: int, what: str) -> None:
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DicomError("%s: the image is %dx%d pixels; at least %dx%d are needed" % (what, w, h, MIN_SIDE, MIN_SIDE))


def _image_storage(ds) -> bool:
    """The dataset (or its file meta) names an image storage SOP class."""
    for source in (ds, getattr(ds, "file_meta", {})):
        for kw in ("SOPClassUID", "MediaStorageSOPClassUID"):
            try:
                if kw in source and "Image Storage" in UID(str(source[kw].value)).name:
                    return True
            except Exception:
                continue
    return False


def missing_pixels_error(ds, path: Path, file_size: int) -> DicomError:
    """The error for a dataset without Pixel Data: not an image, or a truncated / damaged one."""
    what = describe_sop(ds)
    if what:
        return DicomError("%s is %s, not an image" % (path, what))
    for kw in ("FloatPixelData", "DoubleFloatPixelData"):
        if kw in ds:
            return DicomError("%s holds floating-point pixel data, which is not an ultrasound image" % path)
    if "Rows" in ds or "Columns" in ds:
        return DicomError("%s describes an image but holds no pixel data: the file ends at %s before the image "
                          "data (it is truncated, or was exported without its image)" % (path, size_words(file_size)))
    if _image_storage(ds):
        return DicomError("%s is truncated at %s (or damaged): its image attributes and data are missing"
                          % (path, size_words(file_size)))
    if len(ds) == 0:
        return DicomError("%s is damaged: it starts like a DICOM file but its header cannot be parsed" % path)
    return DicomError("%s is a DICOM file without pixel data (not an image)" % path)


def check_pixel_data(ds, header: ImageHeader, path: Path, file_size: int) -> None:
    """Check that the pixel data is present and complete (native) or well formed (encapsulated).

    Raises:
        DicomError: missing or truncated pixel data, a defined length on compressed data.
    """
    elem = guarded(path, "its " + element_name(PIXEL_DATA), lambda: ds.get_item(PIXEL_DATA, keep_deferred=True))
    if elem is None:
        raise missing_pixels_error(ds, path, file_size)
    length = elem.length if isinstance(elem, RawDataElement) else len(elem.value or b"")
    if header.transfer_syntax.is_encapsulated:
        if length != UNDEFINED_LENGTH:
            raise DicomError("%s: compressed pixel data must have undefined length; the file is malformed" % path)
        return
    if length == UNDEFINED_LENGTH:
        raise DicomError("%s: uncompressed pixel data with undefined length; the file is malformed" % path)
    tell = getattr(elem, "value_tell", None)
    available = length if tell is None or elem.value is not None else max(0, min(length, file_size - tell))
    if available < header.expected_bytes:
        frame_bytes = max(1, header.expected_bytes // header.frames)
        have, want = size_words(available), size_words(header.expected_bytes)
        if have == want:
            have, want = f"{available:,} bytes", f"{header.expected_bytes:,}"
        raise DicomError("%s is truncated at %s: the image data stops after %d of its %d frame(s) (%s of %s)"
                         % (path, size_words(file_size), available // frame_bytes, header.frames, have, want))


def check_decoder(path: Path, ts: UID) -> None:
    """DicomError when no installed pydicom decoder reads ``ts``."""
    from pydicom.pixels import get_decoder

    try:
        dec = get_decoder(ts)
    except NotImplementedError as exc:
        raise DicomError("%s uses the transfer syntax %s, which no installed decoder supports"
                         % (path, ts.name)) from exc
    if not dec.is_available:
        raise DicomError("%s uses %s, but no decoder for it is installed (%s)"
                         % (path, ts.name, "; ".join(dec.missing_dependencies)))
