"""``usclean simulate`` and ``usclean simulate-dataset`` end to end (real files, real DICOM)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from simulator.phantoms import PHANTOM_NAMES
from simulator.probes import get_probe
from usclean_gui.cli import main

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def test_list_phantoms(capsys):
    assert main(["simulate", "--list-phantoms"]) == 0
    out = capsys.readouterr().out
    for name in PHANTOM_NAMES:
        assert name in out


def test_simulate_writes_a_valid_multiframe_dicom(tmp_path, capsys):
    out = tmp_path / "clip.dcm"
    rc = main(["simulate", "--probe", "C5-2v", "--phantom", "cyst", "--n-frames", "5", "--size", "48",
               "--seed", "3", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == US_MULTIFRAME and int(ds.NumberOfFrames) == 5
    assert (ds.Rows, ds.Columns) == (48, 48)
    assert float(ds.FrameTime) == pytest.approx(33.3, abs=0.1)
    dz, dx = get_probe("C5-2v").image_window(48)[2]
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (float(region.PhysicalDeltaX) == pytest.approx(dx / 10)
            and float(region.PhysicalDeltaY) == pytest.approx(dz / 10))
    px = ds.pixel_array
    assert px.shape == (5, 48, 48) and px.dtype == np.uint8 and px.std() > 10
    again = tmp_path / "again.dcm"
    assert main(["simulate", "--probe", "C5-2v", "--phantom", "cyst", "--n-frames", "5", "--size", "48",
                 "--seed", "3", "-o", str(again)]) == 0
    second = pydicom.dcmread(again)
    np.testing.assert_array_equal(second.pixel_array, px)  # deterministic per seed
    assert second.SOPInstanceUID != ds.SOPInstanceUID  # but new UIDs every time


@pytest.mark.parametrize("argv,needle", [
    (["--phantom", "banana"], "valid phantoms"),
    (["--probe", "X9"], "valid probes"),
    (["--size", "8"], ">= 16"),
    (["--n-frames", "0"], "frames"),
    (["--lesions", "2"], "mri phantom only"),
])
def test_simulate_bad_input_is_a_clear_message(tmp_path, capsys, argv, needle):
    rc = main(["simulate", "-o", str(tmp_path / "x.dcm"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x.dcm").exists()


def test_simulate_dataset_cli_default_local_cluster(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["simulate-dataset", "--probe", "L11-5v", "--probe", "L12-3v", "--n", "2", "--size", "32",
               "-o", str(out), "--seed", "9", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert len(list(out.glob("*/*/*.npz"))) == 4 and (out / "manifest.json").exists()
    assert "4 written" in capsys.readouterr().out
    rc = main(["simulate-dataset", "--probe", "L11-5v", "--probe", "L12-3v", "--n", "2", "--size", "32",
               "-o", str(out), "--seed", "9", "--no-progress"])
    assert rc == 0 and "0 written, 4 already present" in capsys.readouterr().out


def test_simulate_dataset_cli_bad_input(tmp_path, capsys):
    rc = main(["simulate-dataset", "--probe", "nope", "--n", "2", "-o", str(tmp_path / "d")])
    assert rc == 2 and "valid probes" in capsys.readouterr().err
