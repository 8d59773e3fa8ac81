"""Grouped UNet / DnCNN: size, shapes, member independence."""
import math

import pytest
import torch

from engine.network import DnCNN, UNet, init_members, param_count, select_members, stack_members

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x


def test_unet_size_and_shapes():
    net = UNet(members=1, base=32)
    assert 300_000 < param_count(net) <= 1_000_000
    net = init_members(UNet(1, base=8).config(), [1, 2, 3])
    for h, w in ((16, 16), (37, 53), (64, 32)):
        x = torch.rand(2, 3, 2, h, w)
        out = net(x, torch.tensor([5, 90]))
        assert out.shape == (2, 3, 1, h, w)


def test_members_are_independent_and_match_single_nets():
    cfg = UNet(1, base=8).config()
    net = init_members(cfg, [10, 11, 12])
    for p in net.parameters():  # make the output layer non-trivial
        p.data.add_(0.01 * torch.randn_like(p))
    x = torch.rand(1, 3, 2, 24, 24)
    t = torch.tensor([40])
    out = net(x, t)
    for k in range(3):
        single = UNet(1, base=8)
        single.load_state_dict(select_members(net.state_dict(), 3, [k]))
        torch.testing.assert_close(single(x[:, k:k + 1], t)[:, 0], out[:, k], atol=1e-5, rtol=1e-4)
    # stacking the selected members back gives the same state
    back = stack_members([select_members(net.state_dict(), 3, [k]) for k in range(3)])
    for name, v in net.state_dict().items():
        torch.testing.assert_close(back[name], v)
    w0 = [v.reshape(3, -1)[0] for v in net.state_dict().values()]
    w1 = [v.reshape(3, -1)[1] for v in net.state_dict().values()]
    assert any(not torch.equal(a, b) for a, b in zip(w0, w1))


def test_dncnn_residual_shape():
    net = DnCNN(members=2, width=8, depth=4)
    x = torch.rand(3, 2, 1, 20, 30)
    assert net(x).shape == (3, 2, 1, 20, 30)


def test_three_level_unet_and_uncertainty_head():
    cfg = UNet(1, base=8, levels=3, out_ch=2).config()
    assert cfg["levels"] == 3 and cfg["out_ch"] == 2
    net = init_members(cfg, [1, 2])
    for h, w in ((16, 16), (37, 53)):  # padded internally to a multiple of 8
        out = net(torch.rand(1, 2, 2, h, w), torch.tensor([7]))
        assert out.shape == (1, 2, 2, h, w)
    assert param_count(net) > param_count(UNet(1, base=8))  # the extra level
    x = torch.rand(1, 2, 2, 24, 24)
    out = net(x, torch.tensor([7]))
    # the zero-initialised output layer: x̂0 = μ (the last input channel), the log-variance at its start value
    torch.testing.assert_close(out[:, :, 0], x[:, :, 1])
    assert torch.allclose(out[:, :, 1], torch.full((1, 2, 24, 24), 2 * math.log(0.05)))


def test_unshuffled_unet_runs_at_half_resolution_member_by_member():
    cfg = UNet(1, base=8, levels=3, out_ch=2, unshuffle=2).config()
    assert cfg["unshuffle"] == 2 and "unshuffle" not in UNet(1, base=8).config()
    net = init_members(cfg, [3, 4])
    for p in net.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    seen = []
    net.enc1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    x = torch.rand(1, 2, 2, 37, 53)  # padded internally to a multiple of 16
    t = torch.tensor([12])
    out = net(x, t)
    assert out.shape == (1, 2, 2, 37, 53)
    assert tuple(seen[0][-2:]) == (24, 32) and seen[0][1] == 2 * 8  # 48 x 64 padded, halved; 8 channels a member
    for k in range(2):  # the unshuffle keeps each member's channels one block: grouped == single
        single = UNet(1, base=8, levels=3, out_ch=2, unshuffle=2)
        single.load_state_dict(select_members(net.state_dict(), 2, [k]))
        torch.testing.assert_close(single(x[:, k:k + 1], t)[:, 0], out[:, k], atol=1e-5, rtol=1e-4)
    # the zero-initialised output layer still gives x̂0 = μ and the start log-variance on every pixel of a block
    fresh = init_members(cfg, [5])
    y = fresh(x[:, :1], t)
    torch.testing.assert_close(y[:, 0, 0], x[:, 0, 1])
    assert torch.allclose(y[:, 0, 1], torch.full((1, 37, 53), 2 * math.log(0.05)))
    try:
        UNet(1, unshuffle=3)
    except ValueError as exc:
        assert "unshuffle" in str(exc)
    else:
        raise AssertionError("unshuffle=3 accepted")


def test_a_head_of_its_own_starts_as_a_zero_correction_to_the_log_variance():
    """UNet(head=W): two convolutions on the last features add to each member's log-variance; they start at
    zero (a warm start from a model without them gives its outputs exactly) and leave the image output alone."""
    cfg = dict(base=8, in_ch=2, emb=8, out_ch=2, unshuffle=2)
    torch.manual_seed(0)
    plain = UNet(members=2, **cfg)
    with torch.no_grad():
        for p in plain.parameters():
            p.normal_(0, 0.1)
    grown = UNet(members=2, head=4, **cfg)
    grown.load_state_dict(plain.state_dict() | {k: v for k, v in grown.state_dict().items() if k.startswith("var")})
    x, t = torch.rand(1, 2, 2, 20, 28), torch.tensor([5])
    with torch.no_grad():
        assert torch.equal(plain(x, t), grown(x, t))
        grown.var_out.bias.fill_(0.5)
        a, b = plain(x, t), grown(x, t)
    assert torch.equal(a[:, :, 0], b[:, :, 0])
    torch.testing.assert_close(b[:, :, 1], a[:, :, 1] + 0.5)
    assert grown.config()["head"] == 4 and "head" not in plain.config()
    with pytest.raises(ValueError, match="head"):
        UNet(out_ch=1, head=4)
