"""Probe presets, overrides, geometry and bad input."""
import numpy as np
import pytest

from simulator.probes import PROBE_NAMES, get_probe


def test_presets_match_pymust():
    expected = {"L11-5v": ("linear", 7.6e6, 0.10), "L12-3v": ("linear", 7.54e6, 0.10),
                "C5-2v": ("convex", 3.57e6, 0.21), "P4-2v": ("phased", 2.72e6, 0.28)}
    assert PROBE_NAMES == tuple(expected)
    for name, (kind, fc, pitch) in expected.items():
        p = get_probe(name)
        assert p.kind == kind and p.fc_hz == pytest.approx(fc)
        assert p.pixel_pitch_mm == pytest.approx(pitch)
        assert p.pixel_pitch_mm <= p.wavelength_mm / 2
        assert p.dynamic_range_db == 50 and p.angles_deg == (0.0,) and p.c == 1540
        prm = p.param()
        assert prm.fc == pytest.approx(fc) and prm.fs == pytest.approx(4 * fc)
        prm.fc = 1.0  # a fresh copy each time
        assert p.param().fc == pytest.approx(fc)


def test_name_is_case_insensitive():
    assert get_probe("l11-5V").name == "L11-5v"


def test_overrides():
    p = get_probe("L11-5v", fc_mhz=5.0, bandwidth=60, depth_mm=30, angles_deg=[-5, 0, 5])
    assert p.fc_hz == 5e6 and p.bandwidth_pct == 60 and p.center_depth_mm == 30
    assert p.angles_deg == (-5.0, 0.0, 5.0)
    assert p.pixel_pitch_mm == pytest.approx(0.15)  # lambda = 0.308 mm
    assert p.param().bandwidth == 60


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "L7-4"}, "L11-5v, L12-3v, C5-2v, P4-2v"),
    ({"name": "L11-5v", "fc_mhz": 0}, "centre frequency"),
    ({"name": "L11-5v", "fc_mhz": -3}, "centre frequency"),
    ({"name": "L11-5v", "bandwidth": 0}, "bandwidth"),
    ({"name": "L11-5v", "depth_mm": 100}, "between 2 and 60 mm"),
    ({"name": "C5-2v", "depth_mm": -1}, "depth"),
    ({"name": "P4-2v", "angles_deg": [45]}, "angles"),
    ({"name": "P4-2v", "angles_deg": []}, "angles"),
])
def test_bad_input(kwargs, words):
    with pytest.raises(ValueError, match=words):
        get_probe(**kwargs)


@pytest.mark.parametrize("name", PROBE_NAMES)
def test_image_window_inside_field(name):
    p = get_probe(name)
    x0, z0, (dz, dx) = p.image_window(128)
    assert dz == dx == p.pixel_pitch_mm
    assert x0 == pytest.approx(-(127 * dx) / 2)  # centred laterally
    assert p.depth_range_mm[0] <= z0 and z0 + 127 * dz <= p.depth_range_mm[1]
    x, z = p.grid_mm(128)
    xx, zz = np.meshgrid(x, z)
    assert p.in_field(xx, zz).mean() > 0.95
    # a big image of a sector probe has corners outside the sector, but most is valid
    if p.kind != "linear":
        x, z = p.grid_mm(512)
        frac = p.in_field(*np.meshgrid(x, z)).mean()
        assert 0.5 < frac < 1.0


def test_sector_geometry():
    c = get_probe("C5-2v")
    ox, oz = c.polar_origin_mm
    assert ox == 0 and oz < 0 and c.radius_mm == pytest.approx(49.57)
    assert 30 < c.half_angle_deg < 45
    # the probe axis is in the field, a point at 60 deg off-axis is not
    assert c.in_field(np.array([0.0]), np.array([50.0]))[0]
    r = 80.0
    assert not c.in_field(np.array([ox + r * np.sin(np.radians(60))]), np.array([oz + r * np.cos(np.radians(60))]))[0]
    p = get_probe("P4-2v")
    assert p.polar_origin_mm == (0.0, 0.0) and p.half_angle_deg == 40
    with pytest.raises(ValueError):
        _ = get_probe("L11-5v").polar_origin_mm


def test_image_window_bad_sizes():
    p = get_probe("L11-5v")
    with pytest.raises(ValueError, match="at least|>= 16"):
        p.image_window(8)
    with pytest.raises(ValueError, match="does not fit"):
        p.image_window(1000)  # 100 mm of depth, beyond 60 mm
