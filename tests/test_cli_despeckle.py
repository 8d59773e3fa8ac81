"""`usclean despeckle`: end to end through the CLI with a real tiny ensemble (engine.testing)."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.uid import JPEGBaseline8Bit

from usclean_gui import cli
from usclean_gui.commands import despeckle
from usclean_gui.dicomio import open_image

engine_testing = pytest.importorskip("engine.testing")


@pytest.fixture(scope="module")
def tiny():
    return engine_testing.tiny_ensemble(seed=0)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny):
    """The tiny ensemble saved as a model folder, so `--model DIR` loads it like a trained one."""
    from engine.weights import save_model

    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(folder, tiny.net, {"name": "tiny-test", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                  "default_sampler": "posterior", "default_steps": 1})
    return folder


def _args(argv):
    return cli.build_parser("despeckle").parse_args(["despeckle"] + [str(a) for a in argv])


def test_dicom_roundtrip_through_cli(dicom_factory, file_snapshot, tiny_model_dir, tmp_path, capsys):
    frames = dicom_factory.frames(n_frames=4, colour=True, seed=1)
    src = dicom_factory.dicom("clip.dcm", frames, photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit)
    snap = file_snapshot(src)
    out, std = tmp_path / "out.dcm", tmp_path / "std.dcm"
    rc = cli.main(["despeckle", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "2",
                   "--sampler", "posterior", "--frames", "1:3", "--uncertainty", str(std), "--seed", "3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "wrote %s" % out in captured.out and "despeckle" in captured.err and "frame" in captured.err
    assert snap.unchanged()

    clip, res = open_image(src), open_image(out)
    ds, src_ds = pydicom.dcmread(out), pydicom.dcmread(src)
    assert ds.StudyInstanceUID == src_ds.StudyInstanceUID
    assert ds.SeriesInstanceUID != src_ds.SeriesInstanceUID and ds.SOPInstanceUID != src_ds.SOPInstanceUID
    assert ds.SOPClassUID == src_ds.SOPClassUID and list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    for word in ("tiny-test", "posterior", "steps 2", "members 2"):
        assert word in ds.DerivationDescription
    assert ds.LossyImageCompression == "01" and ds.PhotometricInterpretation == "RGB"
    assert res.n_frames == 2 and list(ds.SourceImageSequence[0].ReferencedFrameNumber) == [2, 3]
    for k, i in enumerate([1, 2]):
        a, b, m = clip.frame(i), res.frame(k), clip.process_mask(i)
        np.testing.assert_array_equal(b[~m], a[~m])  # text, Doppler, calipers, background
        colour = (a.astype(int).max(-1) - a.astype(int).min(-1)) > clip.chroma_tolerance
        assert colour.sum() > 100 and np.array_equal(b[colour], a[colour])
        assert np.all(b[m][:, 0] == b[m][:, 1]) and np.all(b[m][:, 1] == b[m][:, 2])
        assert np.mean(b[m] != a[m]) > 0.5  # the B-mode image was processed
    std_ds = pydicom.dcmread(std)
    assert std_ds.PhotometricInterpretation == "MONOCHROME2" and std_ds.SeriesInstanceUID != ds.SeriesInstanceUID
    assert std_ds.pixel_array.shape == (2,) + clip.shape and std_ds.pixel_array.max() > 0


def test_result_is_the_engine_output_on_the_crop(dicom_factory, tiny, tmp_path):
    """The NPY output is the engine's output on the pane crops with marks filled, pasted through
    the process mask; every other pixel is the source's grey."""
    from usclean_gui.pipeline import pane_input

    src = dicom_factory.dicom("mono.dcm", dicom_factory.frames(n_frames=3, colour=False, seed=4), bits=16)
    clip = open_image(src)
    out = tmp_path / "o.npy"
    assert despeckle.run(_args([src, "-o", out, "--seed", "5", "--quiet"]), ensemble=tiny) == 0
    got = np.load(out)
    x0, y0, x1, y1 = clip.layout.panes[0].box
    crops = np.stack([pane_input(clip, i, 0) for i in range(3)])
    ref = tiny.despeckle(crops, seed=5)
    for i in range(3):
        m = clip.process_mask(i)
        expected = clip.gray_frame(i).copy()
        full = np.zeros(clip.shape, np.float32)
        full[y0:y1, x0:x1] = ref.mean[i]
        expected[m] = full[m]
        np.testing.assert_allclose(got[i], expected, atol=1e-6)
        assert np.array_equal(got[i][~m], clip.gray_frame(i)[~m])
    assert not np.allclose(got, np.stack([clip.gray_frame(i) for i in range(3)]))


def test_seed_determinism_and_png_io(dicom_factory, tiny, tmp_path):
    png = dicom_factory.png("still.png", dicom_factory.frames(n_frames=1, colour=True)[0])
    outs = []
    for name, seed in (("a.png", 1), ("b.png", 1), ("c.png", 2)):
        assert despeckle.run(_args([png, "-o", tmp_path / name, "--seed", seed, "--quiet",
                                    "--uncertainty", tmp_path / ("s" + name[:-4] + ".npy")]), ensemble=tiny) == 0
        outs.append(open_image(tmp_path / name).frame(0))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    std = np.load(tmp_path / "sa.npy")
    clip = open_image(png)
    assert std.shape == clip.shape and std[clip.process_mask(0)].max() > 0
    assert np.all(std[~clip.process_mask(0)] == 0)


def test_real_example_clip(tmp_path, tiny, file_snapshot):
    src = tmp_path / "ybr.dcm"
    shutil.copyfile(examples.get_path("ybr_color"), src)
    snap = file_snapshot(src)
    out = tmp_path / "ybr_out.dcm"
    assert despeckle.run(_args([src, "-o", out, "--frames=-1:", "--quiet"]), ensemble=tiny) == 0
    clip, res = open_image(src), open_image(out)
    assert res.n_frames == 1 and pydicom.dcmread(out).FrameTime == pydicom.dcmread(src).FrameTime
    m = clip.process_mask(29)
    np.testing.assert_array_equal(res.frame(0)[~m], clip.frame(29)[~m])
    assert snap.unchanged()


@pytest.mark.parametrize("spec,n,expected", [
    (None, 4, [0, 1, 2, 3]), ("1:3", 4, [1, 2]), ("2:", 4, [2, 3]), (":2", 4, [0, 1]), ("-1:", 4, [3]),
    ("2", 4, [2]), ("-1", 4, [3]), ("0:99", 4, [0, 1, 2, 3]),
])
def test_parse_frames(spec, n, expected):
    assert despeckle.parse_frames(spec, n) == expected


@pytest.mark.parametrize("spec,message", [("3:1", "selects no frame"), ("a:b", "expected START:STOP"), ("7", "0..3")])
def test_parse_frames_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        despeckle.parse_frames(spec, 4)


def test_cli_errors_exit_2_and_write_nothing(dicom_factory, tiny_model_dir, tmp_path, capsys):
    good = dicom_factory.dicom("g.dcm", dicom_factory.frames(n_frames=2, colour=False))
    cases = [
        ([dicom_factory.bad("truncated"), "-o", tmp_path / "o.dcm"], "truncated"),
        ([dicom_factory.bad("not_dicom"), "-o", tmp_path / "o.dcm"], "not a DICOM file"),
        ([dicom_factory.bad("mpeg4"), "-o", tmp_path / "o.dcm"], "video"),
        ([good, "-o", tmp_path / "o.jpg"], "must end in .dcm, .png or .npy"),
        ([good, "-o", good], "is the input file"),
        ([good, "-o", tmp_path / "o.png"], "PNG holds one frame"),
        ([good, "-o", tmp_path / "o.dcm", "--frames", "5:9"], "selects no frame"),
        ([good, "-o", tmp_path / "nodir" / "o.dcm"], "does not exist"),
        ([good, "-o", tmp_path / "o.dcm", "--model", tmp_path / "no_model"], "model"),
        ([good, "-o", tmp_path / "o.dcm", "--model", tiny_model_dir, "--members", "9"], "members"),
        ([good, "-o", tmp_path / "o.dcm", "--model", tiny_model_dir, "--sampler", "magic"], "sampler"),
        ([good, "-o", tmp_path / "o.dcm", "--model", tiny_model_dir, "--steps", "0"], "steps"),
        ([tmp_path / "missing.dcm", "-o", tmp_path / "o.dcm"], "no such file"),
    ]
    before = good.read_bytes()
    for argv, message in cases:
        rc = cli.main(["despeckle"] + [str(a) for a in argv] + ["--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert "usclean despeckle: error:" in err and message in err, (argv, err)
        assert "Traceback" not in err
        assert not (tmp_path / "o.dcm").exists() and not (tmp_path / "o.png").exists()
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
