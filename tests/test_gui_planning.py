"""The order in which the viewer's despeckling job works (Qt-free: engine_work.next_task)."""
from __future__ import annotations

import numpy as np
import pytest

from usclean_gui.app.engine_work import ENSEMBLE, PREVIEW, Focus, lead, next_task, outward


def _run(n, focus, use_preview=True, preview_s=0.01, ensemble_s=0.05, limit=100):
    previews, ensembles, order = set(), set(), []
    while (task := next_task(n, focus, previews, ensembles, use_preview, preview_s, ensemble_s)) and len(order) < limit:
        order.append(task)
        (previews if task[0] == PREVIEW else ensembles).add(task[1])
    return order


def test_paused_the_frame_on_screen_then_outwards():
    order = _run(6, Focus(2))
    assert order[:2] == [(PREVIEW, 2), (ENSEMBLE, 2)]
    assert [i for k, i in order if k == ENSEMBLE] == [2, 3, 1, 4, 0, 5]
    assert list(outward(0, 3)) == [0, 1, 2]


def test_playing_previews_ahead_of_the_playhead_then_the_ensemble():
    order = _run(10, Focus(3, playing=True, frame_time_s=0.04), preview_s=0.05, ensemble_s=0.2)
    previews = [i for k, i in order if k == PREVIEW]
    assert previews[0] == 3 + lead(0.05, 0.04) == 5 and len(previews) == 10  # then round the loop
    assert order.index((ENSEMBLE, order[10][1])) == 10  # every frame has a preview before the ensemble starts
    assert order[10] == (ENSEMBLE, (3 + lead(0.2, 0.04)) % 10)


def test_one_member_models_have_no_preview_and_done_frames_are_skipped():
    order = _run(4, Focus(0), use_preview=False)
    assert order == [(ENSEMBLE, 0), (ENSEMBLE, 1), (ENSEMBLE, 2), (ENSEMBLE, 3)]
    assert next_task(3, Focus(1), set(), {0, 1, 2}, True, 0.01, 0.05) is None
    assert next_task(3, Focus(7), set(), set(), True, 0.01, 0.05) == (PREVIEW, 2)  # clamped into the clip


class _FakeEnsemble:
    """Records what each engine call was given; its result is a function of the frame and the seed."""

    members, name, default_sampler, default_steps, has_preview, card = 4, "fake", "posterior", 1, True, {}

    def __init__(self):
        self.calls = []

    def iter_despeckle(self, frames, steps=None, sampler=None, members=None, seed=0, cancel=None, fit_frame=None):
        self.calls.append((float(frames[0, 0, 0]), None if fit_frame is None else float(fit_frame[0, 0]), members))
        yield 0, frames[0] * 0.5 + seed, np.zeros_like(frames[0])


def _play(fetch, n, tasks, focus):
    from usclean_gui.app.engine_work import ModelCache, despeckle_clip
    from usclean_gui.app.viewer_state import EngineSettings

    fake = _FakeEnsemble()
    gen = despeckle_clip(ModelCache(loader=lambda name: fake), EngineSettings(), fetch, n, focus)
    next(gen)
    results = [gen.send(focus) for _ in range(tasks)]
    gen.close()
    return fake, results


def test_every_frame_is_fitted_on_the_clips_first_frame_whatever_the_order():
    focus = Focus(3, playing=True, frame_time_s=0.04)
    fake, results = _play(lambda i: np.full((8, 8), float(i), np.float32), 6, 8, focus)
    order = [(r.kind, r.index) for r in results]
    assert order == _run(6, focus, preview_s=1.0 / 4, ensemble_s=1.0)[:8]  # the plan as before
    assert order[0][1] != 0  # the work did not start at frame 0 ...
    assert [fit for _, fit, _ in fake.calls] == [0.0] * 8  # ... yet every call fits on it
    for r in results:  # each result is the engine's for that frame and seed
        np.testing.assert_array_equal(r.mean, np.full((8, 8), r.index * 0.5 + r.index, np.float32))


def test_an_input_that_cannot_be_made_is_an_engine_error():
    from usclean_gui.app.engine_work import EngineError

    def fetch(i):
        if i == 2:
            raise ValueError("frame 2 cannot be decoded: the file is truncated")
        return np.full((8, 8), float(i), np.float32)

    with pytest.raises(EngineError, match="frame 2 cannot be decoded"):
        _play(fetch, 4, 4, Focus(0))
