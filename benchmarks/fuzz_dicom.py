"""Fuzz the DICOM reader: mutants of seed files of every photometric interpretation and transfer
syntax the README lists, each opened and read as a user would (3 frames and their process masks).

Counts: ``ok`` (opened), ``error`` (a DicomError naming the file), and the failures the check is
for: ``unnamed`` (a DicomError without the file's name), ``unexpected`` (caught only by the
last-resort wrapper), ``crash`` (any other exception), ``hang`` (over the timeout).  Also checks
that no mutant's bytes change.  Run under a 4 GB address-space limit, as a small machine has.

    python benchmarks/fuzz_dicom.py                 # 2000 mutants of the seeds below, seed 0
    python benchmarks/fuzz_dicom.py --n 300 --seed 1
"""
from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def seed_files(folder: Path) -> list[Path]:
    """Seed files: factory-written ones of each photometric interpretation / transfer syntax
    (tests/conftest.py's DicomFactory), pydicom's bundled ultrasound examples and encodings, the
    demo clip."""
    import shutil

    import pydicom
    from pydicom import examples
    from pydicom import uid as U

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import DicomFactory

    folder.mkdir(parents=True, exist_ok=True)
    fac = DicomFactory(folder)
    grey, rgb = fac.frames(n_frames=3, colour=False, seed=1), fac.frames(n_frames=3, colour=True, seed=2)
    made = [
        fac.dicom("mono2.dcm", grey), fac.dicom("mono1.dcm", grey, photometric="MONOCHROME1"),
        fac.dicom("mono2_16.dcm", grey, bits=16, WindowCenter=32768, WindowWidth=40000),
        fac.dicom("rgb.dcm", rgb), fac.dicom("ybr_full.dcm", rgb, photometric="YBR_FULL"),
        fac.dicom("ybr422_jpeg.dcm", rgb, photometric="YBR_FULL_422", transfer_syntax=U.JPEGBaseline8Bit),
        fac.dicom("palette16.dcm", rgb, photometric="PALETTE COLOR", palette_bits=16),
        fac.dicom("rle.dcm", rgb, transfer_syntax=U.RLELossless),
        fac.dicom("j2k.dcm", grey, transfer_syntax=U.JPEG2000Lossless),
        fac.dicom("mono_noregion.dcm", grey, region=None, photometric="MONOCHROME1"),
    ]
    data = Path(pydicom.__file__).parent / "data" / "test_files"
    bundled = [data / n for n in ("SC_ybr_full_422_uncompressed.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm",
                                  "ExplVR_BigEnd.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_08.dcm")]
    bundled += [Path(examples.get_path(n)) for n in ("ybr_color", "palette_color", "rgb_color", "jpeg2k")]
    bundled.append(ROOT / "resources" / "demo" / "demo_clip.dcm")
    for p in bundled:
        if p.exists():
            made.append(Path(shutil.copy(p, folder / ("seed_" + p.name))))
    return made


def header_end(path: Path) -> int:
    """Where the pixel data starts (mutations in the header are the interesting ones)."""
    import pydicom

    ds = pydicom.dcmread(path, defer_size=1024)
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    return int(getattr(elem, "value_tell", 0) or min(path.stat().st_size, 4096))


def run(n: int, seed: int, timeout_s: float, verbose: bool) -> collections.Counter:
    from usclean_gui.testing import byte_mutant, element_mutant, fuzz_outcome

    rng = np.random.default_rng(seed)
    counts: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seeds = seed_files(tmp / "seeds")
        ends = {p: header_end(p) for p in seeds}
        for k in range(n):
            src = seeds[k % len(seeds)]
            path = tmp / ("mutant_%05d.dcm" % k)
            try:
                kind = element_mutant(src, rng, path) if rng.random() < 0.3 else None
            except Exception:  # pydicom cannot write that value: mutate the bytes instead
                kind = None
            if kind is None:
                kind, data = byte_mutant(src.read_bytes(), rng, ends[src])
                path.write_bytes(data)
            before = path.read_bytes()
            outcome, detail = fuzz_outcome(path, timeout_s)
            counts[outcome] += 1
            if path.read_bytes() != before:
                counts["source changed"] += 1
            if outcome not in ("ok", "error"):
                examples[outcome].append("%s (%s, from %s): %s" % (path.name, kind, src.name, detail))
            path.unlink()
        counts["seeds"] = len(seeds)
    for outcome, lines in examples.items():
        print("%s:" % outcome)
        for line in lines[: (50 if verbose else 5)]:
            print("   ", line)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="mutants (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before a mutant counts as a hang")
    p.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit (0: none)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.memory_gb > 0:
        limit = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    t0 = time.perf_counter()
    counts = run(args.n, args.seed, args.timeout, args.verbose)
    bad = sum(counts[k] for k in ("unnamed", "unexpected", "crash", "hang", "source changed"))
    print("%d mutants of %d seed files in %.0f s: %d ok, %d clean errors (DicomError naming the file), "
          "%d unnamed, %d unexpected, %d crashes, %d hangs, %d sources changed"
          % (args.n, counts["seeds"], time.perf_counter() - t0, counts["ok"], counts["error"], counts["unnamed"],
             counts["unexpected"], counts["crash"], counts["hang"], counts["source changed"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
