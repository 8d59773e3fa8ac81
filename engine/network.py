"""Networks: a small conditional UNet (IR-SDE x̂_0 head / direct regression) and a DnCNN-style net.

Every network holds K independent *members* side by side as grouped convolutions, so one forward pass
evaluates the whole ensemble (and one optimiser step trains all members jointly, each on its own data).
Tensor layout: input ``(B, K, C, H, W)``, output ``(B, K, 1, H, W)``; steps ``t`` are ``(B,)`` or
``(B, K)`` integers.  Every parameter's first dimension is K member blocks of equal size, which is what
:func:`stack_members` and :func:`select_members` rely on.

The UNet takes ``concat(x_t − μ, μ)`` and a sinusoidal embedding of the integer step t and predicts
x̂_0 as μ + residual (channel 0 of the output; with ``out_ch=2`` channel 1 is the log-variance of the
member's own error, an aleatoric uncertainty head trained with a Gaussian likelihood, :mod:`engine.train`;
with ``head`` > 0 a few layers of its own on the last features add a correction to it)
(an x_0 head: at few sampling steps it is far more stable than a noise head, whose
x̂_0 = μ + (x_t − μ − σ̄_t ε̂)/a_t amplifies errors by 1/a_T = 200).  The direct-regression
baseline is the same UNet fed ``(0, μ)`` at a fixed t = 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer steps: (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _conv(k: int, cin: int, cout: int, size: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(k * cin, k * cout, size, stride=stride, padding=size // 2, groups=k)


class _ResBlock(nn.Module):
    """h + conv(silu(conv(silu(h)) + time bias)) for K members at once."""

    def __init__(self, k: int, ch: int, emb: int):
        super().__init__()
        self.k = k
        self.conv1 = _conv(k, ch, ch)
        self.temb = nn.Conv2d(k * emb, k * ch, 1, groups=k)
        self.conv2 = _conv(k, ch, ch)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.silu(h)) + self.temb(e)
        return h + self.conv2(F.silu(y))


class UNet(nn.Module):
    """Conditional UNet with two (or, ``levels=3``, three) down-sampling levels; ``members`` copies
    evaluated in one pass.

    ``base`` = channels at full resolution (×1, ×2, ×3 (, ×4) at the levels), ``in_ch`` = 2
    (x_t − μ and μ).  With base = 32 one two-level member has ≈ 0.5 M parameters.  A third level quadruples
    the receptive field's reach at little cost (its convolutions run at 1/8 of the resolution).

    ``unshuffle`` = s > 1 runs the whole UNet at 1/s of the resolution: each s × s block of the input
    becomes s² channels (``pixel_unshuffle``) and the output's s² channels per output channel are put
    back as the block (``pixel_shuffle``).  With s = 2 and twice the base a member has the same
    multiply-adds as a full-resolution one at that base, but its convolutions are 2× wider: on AMX / bf16
    matrix units, which need 32 channels to fill a tile, it runs 1.8× faster, and 1.5× in fp32
    (``docs/experiments/half_resolution.md``).
    """

    arch = "unet"

    def __init__(self, members: int = 1, base: int = 32, in_ch: int = 2, emb: int = 32, out_ch: int = 1,
                 levels: int = 2, unshuffle: int = 1, head: int = 0):
        super().__init__()
        if out_ch not in (1, 2):
            raise ValueError("out_ch must be 1 (x0) or 2 (x0 and its log-variance), got %r" % (out_ch,))
        if head < 0 or (head and out_ch != 2):
            raise ValueError("head (the uncertainty head's own width) needs out_ch=2 and head >= 0, got %r" % (head,))
        if levels not in (2, 3):
            raise ValueError("levels must be 2 or 3, got %r" % (levels,))
        if unshuffle not in (1, 2, 4):
            raise ValueError("unshuffle must be 1, 2 or 4, got %r" % (unshuffle,))
        k, c, s2 = members, base, unshuffle * unshuffle
        self.unshuffle = unshuffle
        self.members, self.base, self.in_ch, self.emb, self.out_ch = members, base, in_ch, emb, out_ch
        self.levels, self.head = levels, head
        top = 3 if levels == 2 else 4  # channels (x base) at the lowest resolution
        self.t_mlp1 = nn.Conv2d(k * emb, k * emb * 2, 1, groups=k)
        self.t_mlp2 = nn.Conv2d(k * emb * 2, k * emb, 1, groups=k)
        self.inc = _conv(k, in_ch * s2, c)
        self.enc1 = _ResBlock(k, c, emb)
        self.down1 = _conv(k, c, 2 * c, stride=2)
        self.enc2 = _ResBlock(k, 2 * c, emb)
        self.down2 = _conv(k, 2 * c, 3 * c, stride=2)
        if levels == 3:
            self.enc3 = _ResBlock(k, 3 * c, emb)
            self.down3 = _conv(k, 3 * c, 4 * c, stride=2)
            self.up3 = _conv(k, 4 * c, 3 * c)
            self.fuse3 = _conv(k, 6 * c, 3 * c, size=1)
            self.dec3 = _ResBlock(k, 3 * c, emb)
        self.mid1 = _ResBlock(k, top * c, emb)
        self.mid2 = _ResBlock(k, top * c, emb)
        self.up2 = _conv(k, 3 * c, 2 * c)
        self.fuse2 = _conv(k, 4 * c, 2 * c, size=1)
        self.dec2 = _ResBlock(k, 2 * c, emb)
        self.up1 = _conv(k, 2 * c, c)
        self.fuse1 = _conv(k, 2 * c, c, size=1)
        self.dec1 = _ResBlock(k, c, emb)
        self.out = _conv(k, c, out_ch * s2)
        bias = self.out.bias
        assert bias is not None  # _conv's convolutions have a bias
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(bias)
        if out_ch == 2:  # start the log-variance at that of a typical error (std 0.05)
            with torch.no_grad():
                bias.view(k, 2, s2)[:, 1] = 2 * math.log(0.05)
        if head:  # the uncertainty head's own layers: a correction to the last layer's log-variance, zero at first
            self.var1 = _conv(k, c, head)
            self.var2 = _conv(k, head, head)
            self.var_out = _conv(k, head, s2)
            nn.init.zeros_(self.var_out.weight)
            assert self.var_out.bias is not None
            nn.init.zeros_(self.var_out.bias)

    def config(self) -> dict:
        cfg = {"arch": self.arch, "base": self.base, "in_ch": self.in_ch, "emb": self.emb}
        if self.out_ch != 1:
            cfg["out_ch"] = self.out_ch
        if self.levels != 2:
            cfg["levels"] = self.levels
        if self.unshuffle != 1:
            cfg["unshuffle"] = self.unshuffle
        if self.head:
            cfg["head"] = self.head
        return cfg

    def _time(self, t: torch.Tensor, b: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.inc.weight.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.dim() == 1:
            t = t[:, None].expand(b, self.members)
        e = sinusoidal_embedding(t, self.emb).to(self.inc.weight.dtype)  # (B, K, emb)
        e = e.reshape(b, self.members * self.emb, 1, 1)
        return self.t_mlp2(F.silu(self.t_mlp1(e)))

    @staticmethod
    def _cat(k: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Concatenate channels member by member (keeps the grouped layout)."""
        n, _, h, w = a.shape
        return torch.cat([a.reshape(n, k, -1, h, w), b.reshape(n, k, -1, h, w)], dim=2).reshape(n, -1, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, K, in_ch, H, W) with channels (x_t − μ, μ); returns x̂_0 (B, K, 1, H, W), or with
        ``out_ch=2`` (B, K, 2, H, W): x̂_0 and the log-variance of its error."""
        b, k, _, hh, ww = x.shape
        mu = x[:, :, -1:]
        e = self._time(t, b)
        m = 2 ** self.levels * self.unshuffle
        pad_h, pad_w = (-hh) % m, (-ww) % m
        h = x.reshape(b, k * self.in_ch, hh, ww)
        if pad_h or pad_w:
            h = F.pad(h, (0, pad_w, 0, pad_h), mode="replicate")
        if self.unshuffle > 1:  # member k's channels stay one contiguous block: the grouped layout holds
            h = F.pixel_unshuffle(h, self.unshuffle)
        h1 = self.enc1(self.inc(h), e)
        h2 = self.enc2(self.down1(h1), e)
        if self.levels == 2:
            h3 = self.mid2(self.mid1(self.down2(h2), e), e)
        else:
            g3 = self.enc3(self.down2(h2), e)
            h4 = self.mid2(self.mid1(self.down3(g3), e), e)
            u3 = self.up3(F.interpolate(h4, size=g3.shape[-2:], mode="nearest"))
            h3 = self.dec3(self.fuse3(self._cat(k, u3, g3)), e)
        u2 = self.up2(F.interpolate(h3, size=h2.shape[-2:], mode="nearest"))
        u2 = self.dec2(self.fuse2(self._cat(k, u2, h2)), e)
        u1 = self.up1(F.interpolate(u2, size=h1.shape[-2:], mode="nearest"))
        u1 = self.dec1(self.fuse1(self._cat(k, u1, h1)), e)
        f = F.silu(u1)
        r = self.out(f)
        if self.head:  # add the head's correction to each member's log-variance rows
            dv = self.var_out(F.silu(self.var2(F.silu(self.var1(f)))))
            s2 = self.unshuffle ** 2
            n, _, fh, fw = r.shape
            r = r.reshape(n, k, 2, s2, fh, fw)
            r = torch.stack([r[:, :, 0], r[:, :, 1] + dv.reshape(n, k, s2, fh, fw)], dim=2).reshape(n, -1, fh, fw)
        if self.unshuffle > 1:
            r = F.pixel_shuffle(r, self.unshuffle)
        r = r[:, :, :hh, :ww].reshape(b, k, self.out_ch, hh, ww)
        if self.out_ch == 1:
            return mu + r
        return torch.cat([mu + r[:, :, :1], r[:, :, 1:]], dim=2)


class DnCNN(nn.Module):
    """DnCNN-style residual network (conv–ReLU stack predicting the residual), K members grouped.

    Input ``(B, K, 1, H, W)`` (the speckled frame), output the despeckled frame ``(B, K, 1, H, W)``;
    ``t`` is accepted and ignored so it plugs into the same code paths.
    """

    arch = "dncnn"

    def __init__(self, members: int = 1, width: int = 32, depth: int = 10, in_ch: int = 1):
        super().__init__()
        self.members, self.width, self.depth, self.in_ch = members, width, depth, in_ch
        layers: list[nn.Module] = [_conv(members, in_ch, width), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [_conv(members, width, width), nn.ReLU()]
        layers.append(_conv(members, width, 1))
        self.body = nn.Sequential(*layers)

    def config(self) -> dict:
        return {"arch": self.arch, "width": self.width, "depth": self.depth, "in_ch": self.in_ch}

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        b, k, c, hh, ww = x.shape
        mu = x[:, :, -1:]
        r = self.body(x.reshape(b, k * c, hh, ww))
        return mu + r.reshape(b, k, 1, hh, ww)


def build(config: dict, members: int) -> UNet | DnCNN:
    """Instantiate a network from its ``config()`` dict."""
    cfg = dict(config)
    arch = cfg.pop("arch")
    if arch == "unet":
        return UNet(members=members, **cfg)
    if arch == "dncnn":
        return DnCNN(members=members, **cfg)
    raise ValueError("unknown network architecture %r" % arch)


def param_count(net: UNet | DnCNN) -> int:
    """Parameters per member."""
    return sum(p.numel() for p in net.parameters()) // net.members


def select_members(state: dict[str, torch.Tensor], k: int, idx: Sequence[int]) -> dict[str, torch.Tensor]:
    """Slice a K-member state dict down to the members ``idx`` (in that order)."""
    out = {}
    ix = torch.as_tensor(list(idx), dtype=torch.long)
    for name, v in state.items():
        blocks = v.reshape((k, v.shape[0] // k) + tuple(v.shape[1:]))
        out[name] = blocks[ix].reshape((len(idx) * (v.shape[0] // k),) + tuple(v.shape[1:])).clone()
    return out


def stack_members(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate single- or multi-member state dicts into one grouped state dict."""
    return {name: torch.cat([s[name] for s in states], dim=0) for name in states[0]}


def init_members(config: dict, seeds: Sequence[int]) -> UNet | DnCNN:
    """A grouped network whose member k is initialised from ``torch.manual_seed(seeds[k])``."""
    states = []
    for sd in seeds:
        torch.manual_seed(int(sd))
        states.append(build(config, 1).state_dict())
    net = build(config, len(seeds))
    net.load_state_dict(stack_members(states))
    return net
