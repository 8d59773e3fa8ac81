"""The shared pipeline: strength blend and its provenance, chunked calls sharing one
normalisation, streaming outputs, CLI errors (exit 2, one line naming the file)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from usclean_gui import cli
from usclean_gui.dicomio import open_image
from usclean_gui.pipeline import check_strength, compose, despeckle_frames, ensemble_hook, pane_input

engine_testing = pytest.importorskip("engine.testing")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.weights import save_model

    tiny = engine_testing.tiny_ensemble(seed=0)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(folder, tiny.net, {"name": "tiny-test", "mode": "irsde", "schedule": tiny.schedule.as_dict(),
                                  "default_sampler": "posterior", "default_steps": 1})
    return folder


def _const_hook(value: float):
    def hook(k, crops):
        for j, c in enumerate(crops):
            yield j, np.full_like(c, value), np.full_like(c, 0.1)
    return hook


@pytest.mark.parametrize("colour", [False, True])
def test_strength_blends_in_the_display_domain(dicom_factory, colour):
    clip = open_image(dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=2, colour=colour, seed=3)))
    full, half, none = (next(despeckle_frames(clip, _const_hook(0.5), [1], strength=s)) for s in (1.0, 0.5, 0.0))
    m, g = full.mask, clip.gray_frame(1)
    assert m.sum() > 1000 and np.array_equal(half.mask, m)
    np.testing.assert_allclose(full.unit[m], 0.5, atol=1e-6)
    np.testing.assert_allclose(half.unit[m], g[m] + 0.5 * (0.5 - g[m]), atol=1e-6)
    back = clip.to_unit(half.pixels)
    assert np.abs(back[m] - half.unit[m]).max() <= 0.5 / 255 + 1e-6  # stored to the nearest level
    np.testing.assert_allclose(half.std[m], 0.05, atol=1e-6)
    assert np.all(half.std[~m] == 0)
    assert np.array_equal(none.pixels, clip.frame(1)) and not none.mask.any()  # strength 0: the source
    for r in (full, half):
        assert np.array_equal(r.pixels[~m], clip.frame(1)[~m])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x"])
def test_bad_strength(bad):
    with pytest.raises(ValueError, match="strength"):
        check_strength(bad)


def test_strength_recorded_and_zero_is_the_source(dicom_factory, tiny_model, tmp_path, capsys):
    src = dicom_factory.dicom("s.dcm", dicom_factory.frames(n_frames=3, colour=True, seed=2))
    for strength in ("0", "0.35"):
        out = tmp_path / ("o%s.dcm" % strength)
        assert cli.main(["despeckle", str(src), "-o", str(out), "--model", str(tiny_model), "--quiet",
                         "--strength", strength]) == 0
        ds = pydicom.dcmread(out)
        assert "strength %.2f" % float(strength) in ds.DerivationDescription
        assert "strength %.2f" % float(strength) in capsys.readouterr().out
    np.testing.assert_array_equal(pydicom.dcmread(tmp_path / "o0.dcm").pixel_array, pydicom.dcmread(src).pixel_array)
    rc = cli.main(["despeckle", str(src), "-o", str(tmp_path / "bad.dcm"), "--strength", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "strength" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.dcm").exists()


def test_chunks_share_the_first_frame_normalisation(dicom_factory):
    """Every call after a pane's first is fitted on that pane's first crop (``fit_frame``; it is not
    despeckled again), so the engine fits one normalisation for the whole clip; noise seeds differ per call."""
    clip = open_image(dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=5, colour=False, seed=1)))
    calls = []

    class Spy:
        def iter_despeckle(self, frames, seed=0, fit_frame=None, **kw):
            calls.append((frames.copy(), seed, fit_frame))
            for k, f in enumerate(frames):
                yield k, f * 0 + k / 10.0, f * 0

    results = list(despeckle_frames(clip, ensemble_hook(Spy(), seed=7), range(5), chunk_frames=2))
    first = pane_input(clip, 0, 0)
    assert [len(f) for f, _, _ in calls] == [2, 2, 1] and len({s for _, s, _ in calls}) == 3 and calls[0][1] == 7
    assert calls[0][2] is None
    for _, _, fit in calls[1:]:
        np.testing.assert_array_equal(fit, first)
    np.testing.assert_array_equal(calls[1][0][0], pane_input(clip, 2, 0))
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [round(float(r.means[0].flat[0]), 6) for r in results] == [0.0, 0.1, 0.0, 0.1, 0.0]


def test_single_call_equals_the_engine(dicom_factory):
    """One chunk is exactly the engine's own call on the filled pane crops."""
    tiny = engine_testing.tiny_ensemble(seed=0)
    clip = open_image(dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=3, colour=False, seed=1)))
    results = list(despeckle_frames(clip, ensemble_hook(tiny, seed=4), range(3)))
    ref = tiny.despeckle(np.stack([pane_input(clip, i, 0) for i in range(3)]), seed=4)
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.means[0], ref.mean[i], atol=1e-6)
        again = compose(clip, i, {0: ref.mean[i]}, {0: ref.std[i]})
        np.testing.assert_array_equal(again.pixels, r.pixels)


def test_npy_and_png_outputs_stream(dicom_factory, tiny_model, tmp_path):
    src = dicom_factory.dicom("c.dcm", dicom_factory.frames(n_frames=4, colour=False, seed=1))
    out, std = tmp_path / "o.npy", tmp_path / "s.npy"
    assert cli.main(["despeckle", str(src), "-o", str(out), "--uncertainty", str(std), "--model", str(tiny_model),
                     "--quiet", "--frames", "1:4"]) == 0
    a, s = np.load(out), np.load(std)
    clip = open_image(src)
    assert a.shape == s.shape == (3,) + clip.shape and a.dtype == np.float32
    m = clip.process_mask(2)
    assert np.array_equal(a[1][~m], clip.gray_frame(2)[~m]) and np.all(s[1][~m] == 0) and s[1][m].max() > 0
    png = tmp_path / "o.png"
    assert cli.main(["despeckle", str(src), "-o", str(png), "--model", str(tiny_model), "--quiet",
                     "--frames", "2"]) == 0
    np.testing.assert_array_equal(open_image(png).frame(0)[~m], clip.frame(2)[~m])


@pytest.mark.parametrize("kind", ["truncated", "truncated_jpeg", "not_dicom", "no_pixels", "sr"])
def test_broken_file_exit_2_one_line_naming_it(dicom_factory, tiny_model, tmp_path, capsys, kind):
    bad = dicom_factory.bad(kind)
    before = bad.read_bytes()
    rc = cli.main(["despeckle", str(bad), "-o", str(tmp_path / "o.dcm"), "--model", str(tiny_model), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(bad) in err and "Traceback" not in err
    assert bad.read_bytes() == before and not (tmp_path / "o.dcm").exists()
