"""Inference backends: one network interface over torch, ONNX Runtime and OpenVINO.

A backend network is called as ``net(x, t)`` with ``x`` float32 ``(B, K, C, H, W)`` (K members, C input
channels) and an integer step ``t``, and returns ``(B, K, out_ch, H, W)`` as numpy; ``net.subset(k)`` is
the network of the first k members.  Members run as **separate graphs** (grouped convolutions were
slower than separate members in every runtime measured here, pytorch #70954, onnxruntime #9192).

* ``torch`` — the grouped network of the model folder (``model.safetensors``), on the CPU or a GPU; the
  reference, the training format, and the choice wherever a CUDA GPU is present.
* ``onnx`` — ONNX Runtime on the CPU, one session per member (``member<k>.onnx``).
* ``openvino`` — OpenVINO on the CPU, one compiled model per member and frame shape, in bf16 where the
  CPU has AVX512-BF16 / AMX (OpenVINO reports ``BF16`` among its optimisation capabilities), fp32
  otherwise.

:func:`choose` picks the fastest backend present (OpenVINO, then ONNX Runtime, then torch; torch on a GPU),
``backend=`` overrides.  The ONNX graphs ship beside the safetensors (their SHA-256 and the SHA-256 of the
weights they were exported from are in the model card, ``card["onnx"]``); :func:`export_onnx` writes them
(it needs torch and onnx, the runtimes do not).  The graphs hold their weights as fp16 (the safetensors'
own values, so nothing is lost) with a Cast to fp32 in front of each, which the runtimes fold when they load
a graph: the same fp32 arithmetic.  In a model folder the graphs hold no copies: each weight is ONNX external
data, a byte range of ``model.safetensors`` (:func:`share_weights`), so every weight is on disk once and a
graph is a few tens of kB.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

BACKENDS = ("auto", "openvino", "onnx", "torch")
OPSET = 17
FP16_SUFFIX = "__fp16"  # an fp16 initializer's name: the fp32 tensor's name it is cast to, plus this
PAD_MULTIPLE = 4  # a two-level UNet's down-samplings: inputs are padded to a multiple of 4 (as the network does)


def pad_multiple(config: dict) -> int:
    """What a network's input sides must be a multiple of (the torch network pads to it itself; a graph
    traced on such sizes does not): 2^levels × unshuffle for the UNet, 1 for DnCNN."""
    if config.get("arch") != "unet":
        return 1
    return 2 ** int(config.get("levels", 2)) * int(config.get("unshuffle", 1))


def onnx_name(k: int) -> str:
    return "member%d.onnx" % k


def installed(backend: str) -> bool:
    module = {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}[backend]
    return importlib.util.find_spec(module) is not None


def choose(requested: str = "auto", device: str | None = None, has_onnx: bool = True) -> str:
    """The backend to use: ``requested`` if given; else torch when a torch ``device`` is named or a CUDA GPU is
    present; else the fastest installed CPU runtime."""
    if requested not in BACKENDS:
        raise ValueError("unknown backend %r (choose from %s)" % (requested, ", ".join(BACKENDS)))
    if requested != "auto":
        if not installed(requested):
            raise ValueError("backend %r is not installed (pip install %s)" % (
                requested, {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}[requested]))
        return requested
    if device is not None:  # a torch device was asked for
        return "torch"
    if _gpu_present():
        return "torch"
    if has_onnx:
        for b in ("openvino", "onnx"):
            if installed(b):
                return b
    return "torch"


def _gpu_present() -> bool:
    """A CUDA GPU torch can use (checked without importing torch on machines with no NVIDIA driver)."""
    if not os.path.exists("/proc/driver/nvidia/version") or not installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


class _Separate:
    """Members as separate callables ``f_k(x (B, C, H, W), t) -> (B, out_ch, H, W)``."""

    name = "?"

    def __init__(self, members: Sequence[Callable], out_ch: int, label: str, pad: int = PAD_MULTIPLE):
        self._members = list(members)
        self.out_ch = int(out_ch)
        self.label = label
        self.pad = int(pad)

    @property
    def members(self) -> int:
        return len(self._members)

    def subset(self, k: int) -> _Separate:
        return type(self)._from(self, self._members[:k])

    @classmethod
    def _from(cls, other: _Separate, members: list) -> _Separate:
        new = cls.__new__(cls)
        new.__dict__.update(other.__dict__)
        new._members = members
        return new

    def __call__(self, x: np.ndarray, t: int) -> np.ndarray:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.pad, (-w) % self.pad
        if ph or pw:  # the graphs were traced on sizes that need no padding: replicate-pad here instead
            x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
        x = np.ascontiguousarray(x, np.float32)
        out = np.stack([f(x[:, k], int(t)) for k, f in enumerate(self._members)], axis=1)
        return out[..., :h, :w]


class OnnxNetwork(_Separate):
    """ONNX Runtime sessions, one per member."""

    name = "onnx"

    def __init__(self, paths: Sequence[Path], out_ch: int, threads: int | None = None, pad: int = PAD_MULTIPLE):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in paths]

        def member(sess):
            return lambda x, t: sess.run(None, {"x": x, "t": np.full((1,), t, np.int64)})[0]

        super().__init__([member(s) for s in sessions], out_ch, "ONNX Runtime fp32", pad)


def openvino_bf16() -> bool:
    """True where OpenVINO's CPU plugin can run bf16 (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoNetwork(_Separate):
    """OpenVINO compiled models, one per member and input shape (compiled on first use, kept)."""

    name = "openvino"

    def __init__(self, paths: Sequence[Path], out_ch: int, threads: int | None = None,
                 precision: str | None = None, pad: int = PAD_MULTIPLE):
        import openvino as ov

        core = ov.Core()
        self.precision = precision or ("bf16" if openvino_bf16() else "f32")
        config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        models = [core.read_model(str(p)) for p in paths]

        def member(model) -> Callable[[np.ndarray, int], np.ndarray]:
            compiled: dict = {}  # input shape -> the model compiled for it

            def run(x: np.ndarray, t: int) -> np.ndarray:
                key = x.shape
                if key not in compiled:
                    m = model.clone()
                    m.reshape({"x": list(x.shape), "t": [1]})
                    compiled[key] = core.compile_model(m, "CPU", config)
                return compiled[key]({"x": x, "t": np.full((1,), t, np.int64)})[0]

            return run

        super().__init__([member(m) for m in models], out_ch, "OpenVINO %s" % self.precision, pad)


class TorchNetwork:
    """The grouped torch network (all K members in one pass) on ``device``."""

    name = "torch"

    def __init__(self, net, device=None):
        import torch

        self.torch = torch
        self.net = net
        self.device = next(net.parameters()).device if device is None else torch.device(device)
        self.out_ch = int(getattr(net, "out_ch", 1))
        self.label = "torch fp32 (%s)" % self.device

    @property
    def members(self) -> int:
        return int(self.net.members)

    def subset(self, k: int) -> TorchNetwork:
        from .network import build, select_members

        if k == self.members:
            return self
        sub = build(self.net.config(), k)
        sub.load_state_dict(select_members(self.net.state_dict(), self.members, range(k)))
        return TorchNetwork(sub.to(self.device).eval(), self.device)

    def __call__(self, x: np.ndarray, t: int) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
            tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=self.device)
            return self.net(xt, tt).float().cpu().numpy()


# --------------------------------------------------------------------------- export
def export_onnx(net, folder: str | os.PathLike, in_ch: int, weights: str | os.PathLike | None = None) -> dict[str, str]:
    """Write each member of a grouped torch network as ``member<k>.onnx`` (inputs ``x`` (1, in_ch, H, W)
    with free H, W and ``t`` (1,) int64; output (1, out_ch, H, W)); returns {file name: SHA-256}.  With
    ``weights`` (the network's fp16 safetensors, in ``folder``) the graphs read their weights from that file
    instead of holding copies (:func:`share_weights`)."""
    import onnx
    import torch

    from .network import build, select_members
    from .weights import sha256

    folder = Path(folder)
    out: dict[str, str] = {}
    for k in range(int(net.members)):
        one = build(net.config(), 1)
        one.load_state_dict(select_members(net.state_dict(), int(net.members), [k]))
        one.eval()

        class Member(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x, t):
                return self.m(x[:, None], t)[:, 0]

        m = pad_multiple(net.config())  # sides its multiples: no padding branch is traced
        x = torch.rand(1, in_ch, 64, 80 if 80 % m == 0 else 96)
        t = torch.zeros(1, dtype=torch.long)
        tmp = folder / (onnx_name(k) + ".tmp")
        with warnings.catch_warnings():  # the tracer's notes on shape-dependent branches: inputs are padded
            warnings.simplefilter("ignore")  # to a multiple of 4 before every call (PAD_MULTIPLE)
            torch.onnx.export(Member(one), (x, t), str(tmp), input_names=["x", "t"], output_names=["y"],
                              dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, opset_version=OPSET,
                              dynamo=False)
        graph = onnx.load(str(tmp))  # fp16 initializers, then (with weights) read from the safetensors: one write
        store_fp16(graph)
        if weights is not None:
            share_weights(graph, tmp, weights, k, int(net.members))
        onnx.save(graph, str(tmp))
        onnx.checker.check_model(str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / onnx_name(k))
        out[onnx_name(k)] = sha256(folder / onnx_name(k))
    return out


def store_fp16(model) -> int:
    """Rewrite the loaded ONNX ``model``, in place, with every fp32 initializer that fp16 holds exactly
    (weights exported from fp16 safetensors) stored as fp16 and cast back to fp32 where the graph reads it; the
    graph computes bit for bit what it did.  Returns the number of initializers converted."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) <= 1:
            kept.append(init)
            continue
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):  # not an fp16 value: kept as it is
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, init.name + FP16_SUFFIX))
        casts.append(helper.make_node("Cast", [init.name + FP16_SUFFIX], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def safetensors_spans(path: str | os.PathLike) -> dict[str, tuple[str, int, int]]:
    """{tensor name: (dtype, first byte, end byte)} of a safetensors file, as offsets into the file (the
    format: an 8-byte little-endian header length, a JSON header whose ``data_offsets`` count from its end,
    then the tensors' bytes)."""
    import json
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    start = 8 + n
    return {name: (info["dtype"], start + info["data_offsets"][0], start + info["data_offsets"][1])
            for name, info in header.items() if name != "__metadata__"}


def share_weights(model, path: str | os.PathLike, weights: str | os.PathLike, member: int, members: int) -> int:
    """Make the fp16 initializers of the loaded ONNX ``model`` (one member of a grouped network, as
    :func:`store_fp16` left it; to be saved at ``path``), in place, ONNX external data that points into the
    safetensors file ``weights`` in the same folder: member ``member``'s rows of each grouped tensor are one
    contiguous byte range there.  Only an initializer whose bytes are exactly that range is shared; the graph
    computes what it did, and the model folder holds each weight once.  Returns the number shared."""
    from onnx import TensorProto, numpy_helper

    path, weights = Path(path), Path(weights)
    if path.parent.resolve() != weights.parent.resolve():
        raise ValueError("%s: a graph can only share the weights file of its own folder (%s)" % (path, weights))
    spans = safetensors_spans(weights)
    shared = 0
    with open(weights, "rb") as f:
        for init in model.graph.initializer:
            key = init.name.removeprefix("m.").removesuffix(FP16_SUFFIX)  # "m.": export_onnx's wrapper
            if init.data_type != TensorProto.FLOAT16 or not init.name.endswith(FP16_SUFFIX) or key not in spans:
                continue
            dtype, begin, end = spans[key]
            data = numpy_helper.to_array(init).tobytes()
            size = (end - begin) // members
            offset = begin + member * size
            f.seek(offset)
            if dtype != "F16" or len(data) != size or f.read(size) != data:
                continue
            for field in ("raw_data", "int32_data"):
                init.ClearField(field)
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", weights.name), ("offset", str(offset)), ("length", str(size))):
                entry = init.external_data.add()
                entry.key, entry.value = k, v
            shared += 1
    return shared
