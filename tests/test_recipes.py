"""The shipped recipes (``resources/weights/<name>/train.json``) reproduce the shipped models: the training
configuration each recipe gives a member is the one its model card records, field for field."""
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_shipped as ts  # noqa: E402

from engine.train import TrainConfig  # noqa: E402
from engine.weights import read_card  # noqa: E402

# what a run has of its own, not of its recipe: where it ran, what it was called, where its data and warm start lay
OWN = {"seed", "name", "threads", "device", "minutes", "data_dir", "members", "checkpoint_minutes", "init",
       "init_member"}
DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def _compare(cfg: TrainConfig, recorded: dict) -> dict:
    """Fields where the recipe's configuration differs from the card's record (a field the card lacks was
    added after that run, with a default that keeps the earlier behaviour)."""
    mine = asdict(cfg)
    diff = {}
    for k, v in mine.items():
        if k in OWN:
            continue
        was = recorded.get(k, DEFAULTS[k])
        if isinstance(v, tuple):
            v = list(v)
        if v != was:
            diff[k] = (v, was)
    return diff


@pytest.mark.parametrize("name", ts.ORDER)
def test_recipe_gives_the_configuration_its_card_records(name, tmp_path):
    rec = ts.recipe(name)
    card = read_card(ROOT / "resources" / "weights" / name)
    tr = card["training"]
    if "finetune" in rec:
        seeds = rec["finetune"]["members"]
        cfg = ts.finetune_config(rec, 0, seeds[0], tmp_path, tmp_path, 1, "cpu")
    else:
        seeds = rec["members"]
        cfg = ts.member_config(rec, seeds[0], tmp_path, 1, "cpu")
    assert tr["member_seeds"] == seeds
    assert _compare(cfg, tr["config"]) == {}
    assert tr["recipe"] == rec  # the card carries the recipe it was exported with


def test_preview_recipe_gives_the_configuration_its_card_records(tmp_path):
    rec = ts.recipe("multiprobe")
    prec = ts.preview_recipe(rec)
    card = read_card(ROOT / "resources" / "weights" / "multiprobe" / "preview")
    assert card["training"]["member_seeds"] == prec["members"]
    cfg = ts.member_config(prec, prec["members"][0], tmp_path, 1, "cpu")
    assert _compare(cfg, card["training"]["config"]) == {}


def test_a_changed_recipe_is_caught(tmp_path):
    """The comparison sees a change of one field (the check above can fail)."""
    rec = ts.recipe("multiprobe")
    rec["config"]["nll_beta"] = 0.25
    cfg = ts.member_config(rec, rec["members"][0], tmp_path, 1, "cpu")
    recorded = read_card(ROOT / "resources" / "weights" / "multiprobe")["training"]["config"]
    assert _compare(cfg, recorded) == {"nll_beta": (0.25, 0.5)}


def test_a_finetune_stage_sets_its_own_fields(tmp_path):
    """A fine-tune stage's overrides reach the member's configuration (a head-only stage, as
    benchmarks/head_retrain.py writes it); the first stage's other fields stay."""
    rec = ts.recipe("multiprobe")
    rec["finetune"] = {"members": [7, 8], "max_steps": 300, "lr": 3e-4, "train_only": "uncertainty_head",
                       "head": 16, "nll_beta": 0.0, "precision": "fp32"}
    cfg = ts.finetune_config(rec, 1, 8, tmp_path, tmp_path, 1, "cpu")
    assert (cfg.train_only, cfg.head, cfg.nll_beta, cfg.precision, cfg.lr, cfg.max_steps) == (
        "uncertainty_head", 16, 0.0, "fp32", 3e-4, 300)
    assert (cfg.seed, cfg.init, cfg.init_member) == (8, str(tmp_path), 1)
    assert (cfg.base, cfg.unshuffle, cfg.warmup) == (32, 2, rec["config"]["warmup"])
    cfg.validate()  # a head-only stage with a model to start from is a valid run
