"""The brightness correction restores the input's local mean without bringing the speckle back."""
import numpy as np

from engine.brightness import keep_local_mean, window_sigma
from simulator.randomized import random_pair


def test_a_darkened_output_gets_the_input_brightness_back():
    p = random_pair(21, size=128, disable=("sector", "greymap"), fc_factors=(1.0,))
    dark = np.clip(p.target - 10 / 255, 0, 1)  # a model that lost 10 grey levels
    fixed = keep_local_mean(p.bmode, dark, p.mask)
    m = p.mask & (p.target > 0.15) & (p.target < 0.85)
    assert abs(float((dark - p.bmode)[m].mean()) * 255) > 8
    assert abs(float((fixed - p.bmode)[m].mean()) * 255) < 1.5
    # the correction is smooth: it does not put the speckle back into the image
    resid = (fixed - p.target)[m]
    assert resid.std() < 0.25 * (p.bmode - p.target)[m].std()


def test_the_window_follows_the_grain_and_the_mask_is_respected():
    fine = random_pair(3, size=96, disable=("sector",), fc_factors=(1.0,))
    assert window_sigma(fine.bmode, (1.0, 1.0)) == 6.0 and window_sigma(fine.bmode, (4.0, 2.0)) == 12.0
    mask = np.zeros(fine.bmode.shape, bool)
    mask[:, :48] = True
    out = keep_local_mean(fine.bmode, fine.target * 0.5, mask)
    assert np.array_equal(out[:, 48:], (fine.target * 0.5)[:, 48:])
