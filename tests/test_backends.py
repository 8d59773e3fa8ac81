"""Inference backends: every installed runtime against torch fp32 on real frames, selection, verification."""
import json

import numpy as np
import pytest

from engine import backends, load_ensemble
from engine.testing import tiny_ensemble
from engine.weights import read_model, save_model

RUNTIMES = [b for b in ("onnx", "openvino") if backends.installed(b)]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    ens = tiny_ensemble(seed=3, members=2)
    folder = tmp_path_factory.mktemp("tiny_model")
    save_model(folder, ens.net, {"name": "tiny", "mode": "irsde", "schedule": ens.schedule.as_dict(),
                                 "default_sampler": "posterior", "default_steps": 1})
    return folder


@pytest.fixture(scope="module")
def real_frames():
    from pydicom import examples

    from usclean_gui.dicomio import open_image

    clip = open_image(examples.get_path("ybr_color"))
    # two real cardiac frames, cropped to the sector; odd sizes exercise the padding to a multiple of 4
    return np.stack([clip.gray_frame(i)[30:211, 60:259] for i in (0, 5)]).astype(np.float32)


def test_card_lists_verified_onnx_graphs(model_folder):
    card = json.loads((model_folder / "model.json").read_text())
    assert sorted(card["onnx"]["files"]) == ["member0.onnx", "member1.onnx"]
    assert card["onnx"]["from"] == card["files"]["model.safetensors"]["sha256"]


def test_graphs_store_the_fp16_weights_and_saving_is_reproducible(model_folder, tmp_path):
    """The graphs hold the weights as fp16 (the safetensors' values, exactly), each cast to fp32 once; a model
    saved again is the same bytes (weights, graphs, card)."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from safetensors.numpy import load_file

    graph = onnx.load(str(model_folder / "member0.onnx")).graph
    halves = {i.name[: -len("__fp16")]: numpy_helper.to_array(i) for i in graph.initializer
              if i.data_type == TensorProto.FLOAT16}
    weights = load_file(str(model_folder / "model.safetensors"))
    assert len(halves) >= len(weights) // 2  # every convolution's weights and biases (member 0 of 2)
    assert sum(n.op_type == "Cast" for n in graph.node) >= len(halves)
    assert not [i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2]
    stored = {v.tobytes() for v in weights.values()}
    assert all(any(h.tobytes() in w for w in stored) for h in halves.values() if h.size > 16)
    again = tmp_path / "again"
    net, card, _ = read_model(model_folder)
    save_model(again, net, card)
    for f in ("model.safetensors", "member0.onnx", "member1.onnx", "model.json", "MODEL_CARD.md"):
        assert (again / f).read_bytes() == (model_folder / f).read_bytes(), f


def test_graphs_read_their_weights_from_the_safetensors(model_folder):
    """Every weight is on disk once: each fp16 initializer of a graph is ONNX external data, member k's own
    byte range of model.safetensors, and the graph holds no copy."""
    import onnx
    from onnx import TensorProto

    spans = backends.safetensors_spans(model_folder / "model.safetensors")
    ranges = []
    for k in range(2):
        graph = onnx.load(str(model_folder / ("member%d.onnx" % k)), load_external_data=False).graph
        halves = [i for i in graph.initializer if i.data_type == TensorProto.FLOAT16]
        inline = [i for i in graph.initializer if i.data_location != TensorProto.EXTERNAL]
        assert len(halves) >= len(spans) - len(inline)  # every tensor but single values (kept in the graph)
        assert all(int(np.prod(i.dims)) <= 1 for i in inline)
        assert all(i.data_location == TensorProto.EXTERNAL and not i.raw_data for i in halves)
        for i in halves:
            where = {e.key: e.value for e in i.external_data}
            dtype, begin, end = spans[i.name.removeprefix("m.").removesuffix("__fp16")]
            offset, length = int(where["offset"]), int(where["length"])
            assert where["location"] == "model.safetensors" and dtype == "F16"
            assert length == (end - begin) // 2 and offset == begin + k * length
            ranges.append((offset, offset + length))
    ranges.sort()
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))  # the two members' ranges never overlap


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_matches_torch_on_real_frames(model_folder, real_frames, runtime):
    ref = load_ensemble(model_folder, backend="torch").despeckle(real_frames, seed=0)
    ens = load_ensemble(model_folder, backend=runtime, threads=1)
    out = ens.despeckle(real_frames, seed=0)
    bf16 = "bf16" in ens.backend
    tol = 2e-2 if bf16 else 1e-5  # bf16 keeps 8 bits of mantissa
    assert np.abs(out.mean - ref.mean).max() < tol
    assert np.abs(out.std - ref.std).max() < tol
    assert np.abs(out.mean - ref.mean).mean() < (3e-3 if bf16 else 1e-6)
    one = ens.despeckle(real_frames, members=1, seed=0)
    ref1 = load_ensemble(model_folder, backend="torch").despeckle(real_frames, members=1, seed=0)
    assert np.abs(one.mean - ref1.mean).max() < tol


def test_auto_picks_a_torch_free_runtime_when_one_is_installed(model_folder):
    ens = load_ensemble(model_folder)
    if RUNTIMES:
        assert "torch" not in ens.backend
        assert ens.backend.split()[0] in ("OpenVINO", "ONNX")
    else:
        assert "torch" in ens.backend


@pytest.mark.parametrize("altered", ["member1.onnx", "model.safetensors"])
def test_a_tampered_graph_or_the_weights_it_reads_are_refused(model_folder, tmp_path, altered):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_folder, copy)
    data = bytearray((copy / altered).read_bytes())
    data[-10] ^= 0xFF
    (copy / altered).write_bytes(bytes(data))
    for runtime in RUNTIMES:
        with pytest.raises(ValueError, match=altered):
            load_ensemble(copy, backend=runtime)
    if altered.endswith(".onnx"):
        load_ensemble(copy, backend="torch")  # the safetensors are intact


def test_unknown_backend_is_a_clear_error(model_folder):
    with pytest.raises(ValueError, match="unknown backend"):
        load_ensemble(model_folder, backend="tensorrt")


def test_serving_needs_no_torch(model_folder):
    if not RUNTIMES:
        pytest.skip("no torch-free runtime installed")
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from engine import load_ensemble\n"
            "ens = load_ensemble(sys.argv[1])\n"
            "ens.despeckle(np.full((40, 52), 0.5, np.float32))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "from usclean_gui.app.engine_work import ModelCache\n"  # the app's model cache too
            "ModelCache().get(sys.argv[1]).despeckle(np.full((40, 52), 0.5, np.float32), members='preview')\n"
            "assert 'torch' not in sys.modules, 'the app imported torch'\n")
    subprocess.run([sys.executable, "-c", code, str(model_folder)], check=True)


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_three_level_network_pads_to_its_own_multiple(tmp_path, real_frames, unshuffle):
    if not RUNTIMES:
        pytest.skip("no torch-free runtime installed")
    import torch

    from engine.network import UNet, init_members
    from engine.schedule import make_schedule

    net = init_members(UNet(1, base=4, emb=4, levels=3, unshuffle=unshuffle).config(), [1, 2])
    assert backends.pad_multiple(net.config()) == 8 * unshuffle
    with torch.no_grad():
        net.out.weight.copy_(0.05 * torch.randn(net.out.weight.shape, generator=torch.Generator().manual_seed(0)))
    save_model(tmp_path, net, {"name": "three", "mode": "irsde", "schedule": make_schedule().as_dict(),
                               "default_sampler": "posterior", "default_steps": 1})
    ref = load_ensemble(tmp_path, backend="torch").despeckle(real_frames[:1], seed=0)  # 181 x 199: not a multiple of 8
    out = load_ensemble(tmp_path, backend="onnx" if "onnx" in RUNTIMES else RUNTIMES[0]).despeckle(real_frames[:1],
                                                                                                   seed=0)
    assert np.abs(out.mean - ref.mean).max() < 2e-2 and np.abs(out.mean - ref.mean).mean() < 3e-3


@pytest.fixture(scope="module")
def preview_folder(tmp_path_factory):
    """A tiny model folder that ships a preview network (one smaller, three-level member) in preview/."""
    ens = tiny_ensemble(seed=4, members=2, preview=True)
    folder = tmp_path_factory.mktemp("tiny_preview")
    card = {"name": "tiny", "mode": "irsde", "schedule": ens.schedule.as_dict(), "default_sampler": "posterior",
            "default_steps": 1}
    save_model(folder, ens.net, card)
    save_model(folder / "preview", ens.preview_network.net, dict(card, name="tiny-preview"))
    return folder


@pytest.mark.parametrize("runtime", ["torch"] + RUNTIMES)
def test_preview_network_is_served_by_every_backend(preview_folder, real_frames, runtime):
    ref = load_ensemble(preview_folder, backend="torch")
    ens = load_ensemble(preview_folder, backend=runtime, threads=1)
    assert ens.has_preview and ens.preview_network.members == 1
    assert "levels" in json.loads((preview_folder / "preview" / "model.json").read_text())["network"]
    fast = ens.despeckle(real_frames, members="preview", seed=0)
    want = ref.despeckle(real_frames, members="preview", seed=0)
    tol = 2e-2 if "bf16" in ens.backend else 1e-5
    assert np.abs(fast.mean - want.mean).max() < tol
    first = ens.despeckle(real_frames, members=1, seed=0)  # the preview is its own network, not member 0
    assert np.abs(fast.mean - first.mean).mean() > 1e-3
    plain = load_ensemble(preview_folder, backend=runtime, preview=False)
    assert not plain.has_preview
    assert np.array_equal(plain.despeckle(real_frames, members="preview", seed=0).mean,
                          plain.despeckle(real_frames, members=1, seed=0).mean)


def test_preview_of_another_schedule_is_refused(preview_folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(preview_folder, bad)
    card = json.loads((bad / "preview" / "model.json").read_text())
    card["schedule"] = dict(card["schedule"], T=50)
    (bad / "preview" / "model.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="preview network"):
        load_ensemble(bad, backend="torch")
    assert not load_ensemble(bad, backend="torch", preview=False).has_preview
