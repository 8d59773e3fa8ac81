"""Model folders: fp16 safetensors + card, SHA-256 checks, shipped weights."""
import json
import shutil

import numpy as np
import pytest
import torch

from engine import load_ensemble
from engine.ensemble import ensemble_from_card
from engine.network import select_members
from engine.testing import tiny_ensemble
from engine.weights import CARD_FILE, SHIPPED, WEIGHTS_FILE, read_model, save_model, shipped_dir

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x


def _card():
    return {"name": "tiny", "mode": "irsde", "schedule": {"lambda": 30 / 255, "T": 100, "eps": 0.005},
            "default_sampler": "posterior", "default_steps": 2, "training": {"probes": ["L11-5v"]}}


@pytest.fixture()
def model_dir(tmp_path):
    ens = tiny_ensemble(seed=7, members=3)
    save_model(tmp_path / "m", ens.net, _card())
    return tmp_path / "m", ens


def test_round_trip_fp16(model_dir):
    folder, ens = model_dir
    card = json.loads((folder / CARD_FILE).read_text())
    assert len(card["files"][WEIGHTS_FILE]["sha256"]) == 64 and card["members"] == 3
    assert (folder / "MODEL_CARD.md").read_text().startswith("# Model card: tiny")
    loaded = load_ensemble(folder, device="cpu")
    assert loaded.members == 3 and loaded.default_steps == 2
    for k, v in ens.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[k], v.half().float())
    x = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    ref = ensemble_from_card(ens.net, card).despeckle(x)
    np.testing.assert_allclose(loaded.despeckle(x).mean, ref.mean, atol=2e-3)


def test_tampered_truncated_or_missing_weights_are_refused(model_dir, tmp_path):
    folder, _ = model_dir
    bad = tmp_path / "tampered"
    shutil.copytree(folder, bad)
    data = bytearray((bad / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0x01
    (bad / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_ensemble(bad)
    cut = tmp_path / "truncated"
    shutil.copytree(folder, cut)
    (cut / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:1000])
    with pytest.raises(ValueError, match="SHA-256"):
        load_ensemble(cut)
    gone = tmp_path / "gone"
    shutil.copytree(folder, gone)
    (gone / WEIGHTS_FILE).unlink()
    with pytest.raises(ValueError, match="missing"):
        load_ensemble(gone)
    with pytest.raises(ValueError, match="not a model folder"):
        load_ensemble(tmp_path)
    with pytest.raises(ValueError, match="unknown model"):
        load_ensemble("no-such-model")
    broken = tmp_path / "badjson"
    shutil.copytree(folder, broken)
    (broken / CARD_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="model card"):
        load_ensemble(broken)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_load_and_members_differ(name):
    assert (shipped_dir() / name / CARD_FILE).is_file(), "shipped weights %r missing" % name
    net, card, folder = read_model(name)
    for key in ("training", "metrics", "files", "schedule", "default_steps"):
        assert key in card
    assert card["training"]["wall_minutes"] > 0 and card["training"]["steps"] > 0
    k = card["members"]
    if card["mode"] == "irsde":
        assert k >= 4
    if k > 1:
        s = net.state_dict()
        m0, m1 = select_members(s, k, [0]), select_members(s, k, [1])
        assert all(not torch.equal(m0[n], m1[n]) for n in s if n.endswith("weight"))
    # the default backend serves it: its ONNX graphs match their card, and were exported from these weights
    assert load_ensemble(name).members == k


def test_shipped_set_is_small_enough():
    total = sum(p.stat().st_size for p in shipped_dir().rglob("*") if p.is_file()) if shipped_dir().is_dir() else 0
    assert total <= 25 * 2 ** 20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_card_text_is_its_card(name):
    """Each shipped MODEL_CARD.md (and its preview's) is the rendering of its model.json, so the text a reader
    sees says what the engine loads."""
    from engine.weights import CARD_MD, card_markdown, read_card

    folder = shipped_dir() / name
    folders = [folder] + [p.parent for p in folder.glob("preview/" + CARD_FILE)]
    for folder in folders:
        assert (folder / CARD_MD).read_text().strip() == card_markdown(read_card(folder)).strip(), folder
