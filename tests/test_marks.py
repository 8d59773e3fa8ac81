"""Burned-in marks kept byte for byte: a suite of frames with drawn marks of every kind (text of
several fonts and sizes, lines 1-3 px, crosses, dotted lines, ticks, an ROI outline, a body mark;
grey and coloured) over simulated speckle, measured through the whole pipeline; no halo next to
them; the black background outside the fan never written; real files' marks."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom import examples

from usclean_gui.dicomio import open_image, write_cine
from usclean_gui.pipeline import despeckle_frames
from usclean_gui.testing import draw_marks, kept_fraction, speckle_cine

pytest.importorskip("simulator.cine")


def blur_hook(k, crops):
    """A stand-in despeckler that changes every pixel and smears across marks (sigma 2 px)."""
    import cv2

    for j, c in enumerate(crops):
        yield j, cv2.GaussianBlur(c, (0, 0), 2.0), np.full_like(c, 0.01)


@pytest.fixture(scope="module", params=[("L11-5v", False), ("C5-2v", True)], ids=["linear", "sector"])
def suite(request, tmp_path_factory):
    """(clean cine, marked cine, changed masks, masks per kind, DICOM path) for one probe."""
    probe, sector = request.param
    clean = speckle_cine(6, 256, probe, seed=3, sector=sector)
    marked, changed, kinds = [], [], []
    for f in clean:
        kd: dict = {}
        m, c = draw_marks(f, seed=0, kinds=kd)
        marked.append(m)
        changed.append(c)
        kinds.append(kd)
    path = tmp_path_factory.mktemp("marks") / "marked.dcm"
    write_cine(np.stack(marked), (0.2, 0.2), 33.0, path)
    return clean, np.stack(marked), changed, kinds, path


def _kept(results, marked, masks):
    return float(np.mean([kept_fraction(marked[r.index], r.pixels, masks[r.index]) for r in results]))


def test_cine_marks_kept(suite):
    """In a cine the marks are what stays fixed while the tissue moves: >= 99 % kept."""
    clean, marked, changed, kinds, path = suite
    clip = open_image(path)
    results = list(despeckle_frames(clip, blur_hook, range(len(marked))))
    assert _kept(results, marked, changed) >= 0.99
    for kind in kinds[0]:
        assert _kept(results, marked, [k[kind] for k in kinds]) >= 0.97, kind
    fov = clip.masks.fov()
    tissue = np.mean([r.mask[fov & ~changed[r.index]].mean() for r in results])
    assert tissue >= 0.75  # and most of the tissue is still despeckled
    for r in results:
        assert np.array_equal(r.pixels[~fov], marked[r.index][~fov])  # the black background stays


def test_still_marks_kept(suite, tmp_path):
    """A still has no motion to tell marks from tissue: flat runs, near-white, lines and colour only.
    Measured on this suite: ~92 % of the changed pixels kept (anti-aliased grey text and 1-px dots
    are what is lost); solid marks (lines, ticks, crosses, outlines, body marks) >= 95 %."""
    clean, marked, changed, kinds, _ = suite
    path = tmp_path / "still.dcm"
    write_cine(marked[:1], (0.2, 0.2), 33.0, path)
    (r,) = despeckle_frames(open_image(path), blur_hook, [0])
    assert kept_fraction(marked[0], r.pixels, changed[0]) >= 0.9
    for kind in ("line", "tick", "cross", "outline", "body mark"):
        assert kept_fraction(marked[0], r.pixels, kinds[0][kind]) >= 0.95, kind


def test_coloured_marks_kept(suite, tmp_path):
    clean, _, _, _, _ = suite
    img, changed = draw_marks(clean[0], seed=1, colour=True)
    path = tmp_path / "colour.npy"
    np.save(path, img)
    (r,) = despeckle_frames(open_image(path), blur_hook, [0])
    colour = img.max(-1).astype(int) - img.min(-1) > 0
    assert colour.sum() > 100 and kept_fraction(img, r.pixels, colour) == 1.0
    assert kept_fraction(img, r.pixels, changed) >= 0.9


def test_no_halo_next_to_marks(suite, monkeypatch):
    """Marks are filled before the despeckler sees the frame: 1-4 px from them the result is what
    the same frame without marks gives (measured here: bias -0.002 / -0.005, mean error 0.010 /
    0.012 of the grey scale, against +0.058 / +0.060 without filling)."""
    import cv2
    from scipy import ndimage

    import usclean_gui.pipeline as pipeline

    def smear(k, crops):
        for j, c in enumerate(crops):
            yield j, cv2.GaussianBlur(c, (0, 0), 3.0), np.zeros_like(c)

    clean, marked, changed, _, path = suite
    ref = next(iter(smear(0, clean[:1].astype(np.float32) / 255.0)))[1]
    near = ndimage.binary_dilation(changed[0], iterations=4) & ~ndimage.binary_dilation(changed[0], iterations=1)
    errors = []
    for fill in (True, False):
        if not fill:
            monkeypatch.setattr(pipeline, "inpaint", lambda unit, mask, radius=3: unit)
        (r,) = despeckle_frames(open_image(path), smear, [0])
        errors.append((r.unit - ref)[near & r.mask])
    filled, unfilled = errors
    assert filled.size > 2000
    assert abs(filled.mean()) < 0.01 and unfilled.mean() > 0.03
    assert np.abs(filled).mean() < 0.4 * np.abs(unfilled).mean()


def test_real_colour_box_outline_kept():
    """The lymph-node image: the white colour-box outline over tissue (0 % kept before) is kept."""
    path = examples.get_path("rgb_color")
    clip = open_image(path)
    f = clip.frame(0)
    grey = (f[..., 0] == f[..., 1]) & (f[..., 1] == f[..., 2]) & (f[..., 0] >= 225)
    box = np.zeros(clip.shape, bool)
    box[70:152, 155:278] = True
    cand = grey & box
    rows = cand.sum(axis=1) >= 80
    cols = cand.sum(axis=0) >= 50
    outline = cand & (rows[:, None] | cols[None, :])
    assert outline.sum() > 150
    (r,) = despeckle_frames(clip, blur_hook, [0])
    assert kept_fraction(f, r.pixels, outline) >= 0.99


def test_real_cardiac_labels_kept():
    """The cardiac cine: its labels, depth ticks and depth figure (right of the fan, inside the
    DICOM region) and the fan's black background are never written."""
    clip = open_image(examples.get_path("ybr_color"))
    results = list(despeckle_frames(clip, blur_hook, [0, 15]))
    fov = clip.masks.fov()
    for r in results:
        f = clip.frame(r.index)
        assert np.array_equal(r.pixels[:, 290:], f[:, 290:]) and np.array_equal(r.pixels[~fov], f[~fov])
        assert r.mask.sum() > 0.6 * fov.sum()


def test_speckle_alone_is_not_a_mark(suite, tmp_path):
    """Speckle's own flat runs (one grey value over a few pixels of an elongated grain) are not marks: on
    frames with nothing drawn on them under 1 % of the field of view is taken for one by the per-frame
    detectors (up to 2.7 %, short dashes of speckle left in the despeckled pane, before plateaus had to stand
    out of the local median and lines were 15 px long).  A still, so that what stays fixed in a cine
    does not count here."""
    clean = suite[0]
    for i in (0, 3):
        path = tmp_path / ("clean%d.dcm" % i)
        write_cine(clean[i:i + 1], (0.2, 0.2), 33.0, path)
        clip = open_image(path)
        fov = clip.masks.fov()
        assert fov.mean() > 0.3
        false = clip.masks.marks(0)[fov].mean()
        assert false < 0.01, (i, false)


def test_demo_cine_has_no_marks():
    """The demo clip has nothing drawn on it: in a moving cine, frame by frame, only flat groups of
    6+ pixels count (the fixed graphics are what stays fixed), so under 0.3 % of its field of view is
    taken for a mark (2.35 % before: dashes of speckle kept in the despeckled pane)."""
    from pathlib import Path

    clip = open_image(Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo_clip.dcm")
    fov = clip.masks.fov()
    for i in (0, 15, 29):
        assert clip.masks.marks(i)[fov].mean() < 0.003, i


def _frame_with_graphics(seed: int) -> np.ndarray:
    """A 72 x 96 uint8 frame: Rayleigh speckle, text, a diagonal and a vertical line, a box outline, faint
    flat patches."""
    import cv2

    rng = np.random.default_rng(seed)
    q = np.clip(rng.rayleigh(45, (72, 96)), 0, 255).astype(np.uint8)
    q = cv2.GaussianBlur(q, (0, 0), 0.7 + 0.3 * (seed % 3))  # smooth tissue: long nearly flat runs
    cv2.putText(q, "MI %d" % seed, (4, 16), cv2.FONT_HERSHEY_PLAIN, 1.0, int(rng.integers(170, 256)), 1)
    cv2.line(q, (2, 70), (90, 25), 230, 1)
    cv2.line(q, (80, 5), (80, 60), 12, 1)  # a dark line
    cv2.rectangle(q, (30, 30), (60, 55), 200, 1)
    for k, level in enumerate((78, 86, 94, 102)):  # faint flat patches: near the contrast thresholds
        q[60:66, 6 + 12 * k:12 + 12 * k] = level + seed
    return q


def _threshold_frame(seed: int) -> np.ndarray:
    """A 64 x 64 uint8 frame of flat tissue (60 +- 2) with lines 13-18 levels above it: side contrasts that
    straddle the detector's threshold (EDGE_CONTRAST), lines and patches along every direction."""
    rng = np.random.default_rng(seed)
    q = (60 + rng.integers(-2, 3, (64, 64))).astype(np.uint8)
    for k, lift in enumerate((13, 14, 15, 16, 17, 18)):
        q[6 + 9 * k, 4:40] = 60 + lift  # horizontal
        q[4:30, 44 + 3 * k] = 60 + lift if k % 2 else 60 - lift  # vertical, bright and dark
    for k, lift in enumerate((14, 15, 16)):
        for j in range(20):
            q[34 + j, 2 + 6 * k + j] = 60 + lift  # diagonal
            q[34 + j, 62 - 6 * k - j] = 60 + lift  # anti-diagonal
    return q


def _lines_by_definition(q, cand, tol, length=15, side=3):
    """The straight-run detector, start by start, as its docstring states it."""
    from usclean_gui.dicomio import marks as M

    h, w = q.shape
    qi = q.astype(np.int64)
    out = np.zeros((h, w), bool)
    for dy, dx in M._OFFSETS:
        for y in range(h):
            for x in range(w):
                ys, xs = y + dy * np.arange(length), x + dx * np.arange(length)
                if ys.max() >= h or xs.min() < 0 or xs.max() >= w or not cand[ys, xs].all():
                    continue
                v = qi[ys, xs]
                if v.max() - v.min() > max(tol, M.LINE_RELATIVE * 255):
                    continue
                level = v.mean()
                sides = [np.abs(level - qi[np.clip(ys + sy, 0, h - 1), np.clip(xs + sx, 0, w - 1)]).mean()
                         for sy, sx in ((dx * side, -dy * side), (-dx * side, dy * side))]
                contrast = min(sides)
                if contrast >= M.EDGE_CONTRAST and v.max() - v.min() <= max(tol, M.LINE_RELATIVE * contrast):
                    out[ys, xs] = True
    return out & cand


def _plateaus_by_definition(q, cand, min_size):
    """Exactly flat groups (tol 0): each value's 8-connected candidate groups of >= min_size pixels whose ring
    of 8-neighbours outside every such group differs from their value by EDGE_CONTRAST on average (a ring pixel
    between two groups belongs to the one whose first pixel in raster order comes last)."""
    from scipy import ndimage

    from usclean_gui.dicomio import marks as M

    groups = []
    for v in np.unique(q[cand]):
        lab, n = ndimage.label(cand & (q == v), structure=np.ones((3, 3)))
        for g in range(1, n + 1):
            m = lab == g
            if m.sum() >= min_size:
                groups.append((int(np.flatnonzero(m.ravel())[0]), int(v), m))
    big = np.zeros(q.shape, bool)
    for _, _, m in groups:
        big |= m
    owner = np.full(q.shape, -1)
    first = np.full(q.shape, -1)
    for gi, (f, _, m) in enumerate(groups):
        near = ndimage.binary_dilation(m, structure=np.ones((3, 3))) & ~big & (f > first)
        owner[near], first[near] = gi, f
    out = np.zeros(q.shape, bool)
    for gi, (_, v, m) in enumerate(groups):
        ring = owner == gi
        if ring.any() and np.abs(q[ring].astype(float) - v).mean() >= M.EDGE_CONTRAST:
            out |= m
    return out


@pytest.mark.parametrize("seed", range(3))
def test_mark_detectors_match_their_definitions(seed):
    """The fast detectors (windows by doubling, pruning by bounds, candidate-only graphs) find exactly what the
    definitions find, on frames with text, lines and outlines over speckle, and lines at the threshold."""
    from usclean_gui.dicomio import marks as M

    q = _frame_with_graphics(seed)
    cand = q > M.BLACK
    for frame in (q, _threshold_frame(seed)):
        lines = M._lines(frame, frame > M.BLACK, M.LINE_TOLERANCE)
        assert lines.any()
        np.testing.assert_array_equal(lines, _lines_by_definition(frame, frame > M.BLACK, M.LINE_TOLERANCE))
    import cv2

    rel = q.astype(np.int16) - cv2.medianBlur(q, M.MEDIAN).astype(np.int16)
    flat_cand = cand & (np.abs(rel) >= M.CONTRAST)
    for least in (M.MIN_PLATEAU, M.CINE_MIN_PLATEAU):
        flat = M._plateaus(q, flat_cand, 0, least)
        assert flat.any()
        np.testing.assert_array_equal(flat, _plateaus_by_definition(q, flat_cand, least))


@pytest.mark.parametrize("name", ["ybr_color", "palette_color"])
def test_marks_read_only_the_search_box_and_match_the_whole_frame(name):
    """frame_marks looks inside the bounding box of ``where`` grown by REACH; the mask equals the detector
    run on the whole frame, for the clip's field of view and for boxes that touch the frame's edges or not."""
    from usclean_gui.dicomio import marks as M

    clip = open_image(examples.get_path(name))
    d = clip.masks.display(0)
    h, w = d.shape
    rng = np.random.default_rng(7)
    wheres = [clip.masks.fov()]
    for y0, y1, x0, x1 in ((0, h // 2, 0, w // 3), (h // 4, h, w // 2, w), (20, h - 30, 15, w - 25)):
        box = np.zeros(d.shape, bool)
        box[y0:y1, x0:x1] = True
        wheres += [box, box & (rng.random(d.shape) < 0.9)]
    found = 0
    for where in wheres:
        for lossy, least in ((False, M.MIN_PLATEAU), (True, M.CINE_MIN_PLATEAU)):
            got = M.frame_marks(d, where, lossy, least)
            want = M._frame_marks(d, where, lossy, least)
            np.testing.assert_array_equal(got, want)
            found += int(want.sum())
    assert found > 0  # the frames' labels and outlines are found: the comparison is not between two empty masks
    assert not M.frame_marks(d, np.zeros(d.shape, bool)).any()
