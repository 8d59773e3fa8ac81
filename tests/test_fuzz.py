"""Fuzzing the reader (seeded, a few hundred mutants; the large run is benchmarks/fuzz_dicom.py):
byte flips, truncations, broken VRs and lengths, corrupted image / region elements, non-DICOM
files.  Each is opened and read as a user would; only a DicomError naming the file may come out,
nothing hangs, the mutant's bytes never change, and the CLI exits 0 or 2 with one line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as U

from usclean_gui import cli
from usclean_gui.testing import byte_mutant, element_mutant, fuzz_outcome

N_MUTANTS = 300
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import DicomFactory

    folder = tmp_path_factory.mktemp("fuzz_seeds")
    fac = DicomFactory(folder)
    grey, rgb = fac.frames(n_frames=3, colour=False, seed=1), fac.frames(n_frames=3, colour=True, seed=2)
    files = [
        fac.dicom("mono2.dcm", grey), fac.dicom("mono1.dcm", grey, photometric="MONOCHROME1", region=None),
        fac.dicom("mono16.dcm", grey, bits=16, WindowCenter=32768, WindowWidth=40000),
        fac.dicom("rgb.dcm", rgb), fac.dicom("ybr.dcm", rgb, photometric="YBR_FULL"),
        fac.dicom("ybr422.dcm", rgb, photometric="YBR_FULL_422", transfer_syntax=U.JPEGBaseline8Bit),
        fac.dicom("palette.dcm", rgb, photometric="PALETTE COLOR", palette_bits=16),
        fac.dicom("rle.dcm", grey, transfer_syntax=U.RLELossless),
        fac.dicom("j2k.dcm", rgb, transfer_syntax=U.JPEG2000Lossless),
    ]
    for name in ("SC_ybr_full_422_uncompressed.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "image_dfl.dcm"):
        if (TEST_FILES / name).exists():
            files.append(Path(shutil.copy(TEST_FILES / name, folder / name)))
    return files


def _header_end(path: Path) -> int:
    ds = pydicom.dcmread(path, defer_size=1024)
    return int(getattr(ds.get_item(0x7FE00010, keep_deferred=True), "value_tell", 0) or 2048)


def _mutants(seeds, folder: Path, n: int, seed: int):
    rng = np.random.default_rng(seed)
    ends = {p: _header_end(p) for p in seeds}
    for k in range(n):
        src = seeds[k % len(seeds)]
        path = folder / ("m%04d.dcm" % k)
        kind = None
        if rng.random() < 0.3:
            try:
                kind = element_mutant(src, rng, path)
            except Exception:  # a value pydicom will not write: mutate bytes instead
                kind = None
        if kind is None:
            kind, data = byte_mutant(src.read_bytes(), rng, ends[src])
            path.write_bytes(data)
        yield path, kind


def test_fuzzed_files_raise_only_dicom_errors(seeds, tmp_path):
    outcomes: dict[str, list[str]] = {}
    for path, kind in _mutants(seeds, tmp_path, N_MUTANTS, seed=17):
        before = path.read_bytes()
        outcome, detail = fuzz_outcome(path, timeout_s=30.0)
        outcomes.setdefault(outcome, []).append("%s (%s): %s" % (path.name, kind, detail))
        assert path.read_bytes() == before, path
        path.unlink()
    bad = {k: v for k, v in outcomes.items() if k not in ("ok", "error")}
    assert not bad, bad
    assert len(outcomes.get("ok", [])) > 30 and len(outcomes.get("error", [])) > 100  # the mutants do both


def test_fuzzed_files_through_the_cli(seeds, tmp_path, capsys):
    from engine.testing import tiny_ensemble
    from engine.weights import save_model

    tiny = tiny_ensemble(seed=0)
    model = tmp_path / "tiny"
    save_model(model, tiny.net, {"name": "tiny", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                 "default_sampler": "posterior", "default_steps": 1})
    work = tmp_path / "work"
    work.mkdir()
    codes = []
    for path, kind in _mutants(seeds, work, 14, seed=5):
        before = path.read_bytes()
        out = work / "out.dcm"
        rc = cli.main(["despeckle", str(path), "-o", str(out), "--model", str(model), "--quiet", "--frames", "0"])
        err = capsys.readouterr().err
        codes.append(rc)
        assert rc in (0, 2), (kind, err)
        if rc == 2:
            assert len(err.strip().splitlines()) == 1 and str(path) in err and not out.exists(), (kind, err)
        assert path.read_bytes() == before
        assert [p.name for p in work.iterdir() if p.name.endswith(".part")] == []
        out.unlink(missing_ok=True)
        path.unlink()
    assert 2 in codes
