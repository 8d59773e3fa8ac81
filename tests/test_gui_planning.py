"""The order in which the viewer's despeckling job works (Qt-free: engine_work.next_task)."""
from __future__ import annotations

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
