"""Can a network of its own predict a member's error better than the member's head?  One run, foreign sets.

A second UNet (the preview's shape: half resolution, base 16, three levels, 394 k parameters) is given the
speckled crop and member 0's despeckled output, and trained with the plain Gaussian likelihood to predict
the log-variance of that output's error. The pairs are member 0's own recipe pairs, and the output comes
from the member through the ensemble's sampler with normalisation off, as in training. Member 0 itself is
frozen. The network is then scored on the foreign sets (9 inputs per image) next to member 0's own head
and the oracle (``benchmarks/uncertainty_ceiling.py``). On the foreign sets it sees the output of the
shipped pipeline (grain normalisation and brightness on), which it was not trained on. So this measures
what such a network gives as the product would use it.

    python benchmarks/error_net.py --data data [--steps 3000] [--model multiprobe]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LV0 = 2 * math.log(0.03)  # the log-variance a zero output stands for (a typical error std of 0.03)


def log_variance(enet, noisy, out):
    """The error network's log-variance (N, 1, 1, H, W) for speckled frames and their outputs (torch)."""
    import torch

    lv = enet(torch.cat([out - noisy, noisy], dim=2), torch.zeros(len(noisy), dtype=torch.long)) - noisy
    return (lv + LV0).clamp(-14.0, 2.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the recipes' training-data sets (built if absent)")
    ap.add_argument("--model", default="multiprobe")
    ap.add_argument("--steps", type=int, default=3000)
    a = ap.parse_args(argv)
    import torch
    import train_shipped as ts

    from engine import train as tr
    from engine.ensemble import ensemble_from_card
    from engine.generalization import load_foreign
    from engine.network import UNet, build, init_members, select_members
    from engine.scoring import uncertainty_agreement, uncertainty_ceiling
    from engine.weights import read_model
    from simulator.foreign import PROBES

    torch.set_num_threads(1)
    rec = ts.recipe(a.model)
    seed = rec["members"][0]
    cfg = ts.member_config(rec, seed, ts.build_data(a.data, rec["dataset"], print), 1, "cpu")
    src, card, _ = read_model(a.model)
    member = build(card["network"], 1)
    member.load_state_dict(select_members(src.state_dict(), int(card["members"]), [0]))
    member.eval()
    train_view = tr.ensemble_for(member, cfg)  # normalisation off: the member as it was trained
    pool = tr.Pool(cfg, tr.pair_source(cfg, "train"), np.random.default_rng([seed, 0, 1]))
    pool.fill()
    rngs = [np.random.default_rng([seed, 0])]
    enet = init_members(UNet(1, base=16, levels=3, unshuffle=2, in_ch=2, out_ch=1).config(), [5])
    opt = torch.optim.Adam(enet.parameters(), lr=1e-3)
    t0, run = time.time(), None
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        pool.refresh()
        noisy, clean = pool.batch(rngs)
        with torch.no_grad():
            out = torch.from_numpy(train_view.despeckle(noisy[:, 0, 0].numpy(), seed=step).mean)[:, None, None]
        lv = log_variance(enet, noisy, out)
        loss = (0.5 * ((out - clean) ** 2 * torch.exp(-lv) + lv)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enet.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        run = value if run is None else 0.98 * run + 0.02 * value
        if step % 500 == 0 or step == a.steps - 1:
            print("step %d: likelihood %.4f (%.1f min)" % (step + 1, run, (time.time() - t0) / 60), flush=True)
    enet.eval()
    one = {k: v for k, v in card.items() if k not in ("uncertainty",)}  # member 0 with its own head, unscaled
    product = ensemble_from_card(member, one | {"members": 1}, name="member 0")
    print("r per pixel / 8x8 patch / image against |error|, 9 inputs per image:")
    for probe in PROBES:
        fs = load_foreign(probe, inputs=9)
        res = product.despeckle(fs.bmode, seed=0)
        err = res.mean - fs.clean
        with torch.no_grad():
            lv = log_variance(enet, torch.from_numpy(fs.bmode.astype(np.float32))[:, None, None],
                              torch.from_numpy(res.mean.astype(np.float32))[:, None, None])[:, 0, 0]
        rows = {"member's head": uncertainty_agreement(res.std, err, fs.mask),
                "error network": uncertainty_agreement(np.exp(0.5 * lv.numpy()), err, fs.mask),
                "oracle": uncertainty_ceiling(err, fs.mask, fs.image)["oracle"]}
        print("  %s: " % probe + "; ".join("%s %.2f / %.2f / %.2f" % (k, r["pixel"], r["patch"], r["image"])
                                          for k, r in rows.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
