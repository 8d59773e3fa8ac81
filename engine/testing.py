"""Test helpers for other modules: a real, randomly initialised, tiny ensemble (no weights needed)."""
from __future__ import annotations

import torch

from .ensemble import Ensemble
from .network import UNet, init_members
from .sde import make_schedule


def tiny_network(config: dict, seeds, seed: int) -> UNet:
    """Members of ``config`` with random weights, their (zero-initialised) output layer made random too."""
    net = init_members(config, list(seeds))
    assert isinstance(net, UNet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # the trained nets start with a zero output layer; give these a random one
        net.out.weight.copy_(0.05 * torch.randn(net.out.weight.shape, generator=g))
    return net.eval()


def tiny_ensemble(seed: int = 0, members: int = 2, device: str | None = "cpu", preview: bool = False) -> Ensemble:
    """A tiny IR-SDE ensemble (≈ 3 k parameters per member, random weights) for fast GUI/CLI tests.

    It runs the real code path (grouped UNet, sampler, tiling, validation); its output is a mildly
    filtered frame and the member std is non-zero.  Default: 1-step posterior, normalisation off.
    ``preview``: with a preview network (one smaller member of its own, three levels).
    """
    net = tiny_network(UNet(1, base=4, emb=4).config(), [seed * 1000 + k for k in range(members)], seed)
    prev = tiny_network(UNet(1, base=2, emb=4, levels=3).config(), [seed * 1000 + 99], seed + 1) if preview else None
    return Ensemble(net, mode="irsde", schedule=make_schedule(), name="tiny-%d" % seed, device=device,
                    default_sampler="posterior", default_steps=1, normalize="off", preview=prev)
