"""Model folders: fp16 safetensors weights + a model card (``model.json`` / ``MODEL_CARD.md``).

A model folder holds ``model.safetensors`` (all K members as grouped tensors, fp16) and ``model.json``
with the network config, the mode (``irsde`` | ``regression`` | ``dncnn``), the SDE schedule, the
default sampler/steps, the training record and metrics, and the SHA-256 of every weight file.
:func:`read_model` refuses a folder whose weights do not match the card (tampered, truncated, corrupt).
Shipped models live in ``resources/weights/<name>/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
CARD_MD = "MODEL_CARD.md"
from .catalog import SHIPPED  # noqa: E402


def shipped_dir() -> Path:
    """``resources/weights`` of this checkout / installation."""
    return Path(__file__).resolve().parent.parent / "resources" / "weights"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def resolve(name_or_folder: str | os.PathLike) -> Path:
    """Map a shipped model name or a folder path to the model folder (ValueError if neither)."""
    s = str(name_or_folder)
    if s.lower() in SHIPPED and not Path(s).is_dir():
        folder = shipped_dir() / s.lower()
        if not (folder / CARD_FILE).is_file():
            raise ValueError("shipped model %r is not installed (missing %s)" % (s, folder / CARD_FILE))
        return folder
    folder = Path(s)
    if not folder.is_dir():
        raise ValueError("unknown model %r: give one of %s or a folder written by `usclean train`"
                         % (s, ", ".join(SHIPPED)))
    if not (folder / CARD_FILE).is_file():
        raise ValueError("%s is not a model folder (no %s; a training folder gets one when training ends)"
                         % (folder, CARD_FILE))
    return folder


def save_model(folder: str | os.PathLike, net, card: dict, onnx: bool = True) -> dict:
    """Write ``net`` as fp16 safetensors plus the card (JSON + markdown) and, with ``onnx``, its members as
    ONNX graphs for the torch-free runtimes (:func:`engine.backends.export_onnx`, from the fp16 weights
    as stored, which the graphs read from the safetensors file rather than holding copies); returns the
    final card."""
    import torch
    from safetensors.torch import save_file

    from .network import build

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in net.state_dict().items()}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})  # one key: the header is byte-for-byte reproducible
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / WEIGHTS_FILE)
    card = dict(card)
    card.update({"network": net.config(), "members": int(net.members),
                 "params_per_member": sum(p.numel() for p in net.parameters()) // net.members,
                 "files": {WEIGHTS_FILE: {"sha256": sha256(folder / WEIGHTS_FILE),
                                          "bytes": (folder / WEIGHTS_FILE).stat().st_size, "dtype": "float16"}}})
    card.pop("onnx", None)
    if onnx:
        from .backends import OPSET, export_onnx

        stored = build(net.config(), int(net.members))
        stored.load_state_dict({k: v.float() for k, v in state.items()})
        card["onnx"] = {"files": export_onnx(stored.eval(), folder, int(net.config().get("in_ch", 2)),
                                             weights=folder / WEIGHTS_FILE),
                        "from": card["files"][WEIGHTS_FILE]["sha256"], "opset": OPSET}
    _atomic_write(folder / CARD_FILE, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    _atomic_write(folder / CARD_MD, card_markdown(card).encode())
    return card


def read_card(folder: Path) -> dict:
    try:
        return json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError("cannot read model card %s: %s" % (folder / CARD_FILE, exc)) from exc


def read_model(name_or_folder: str | os.PathLike):
    """Load and verify a model folder; returns (torch network in fp32 on CPU, card, folder)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .network import build

    folder = resolve(name_or_folder)
    card = read_card(folder)
    for key in ("network", "members", "mode", "files"):
        if key not in card:
            raise ValueError("model card %s lacks %r" % (folder / CARD_FILE, key))
    for fname, info in card["files"].items():
        path = folder / fname
        if not path.is_file():
            raise ValueError("model %s: weight file %s is missing" % (folder, fname))
        if sha256(path) != info.get("sha256"):
            raise ValueError("model %s: %s does not match the SHA-256 in its model card (corrupt, truncated "
                             "or modified weights); refusing to load it" % (folder, fname))
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise ValueError("model %s: cannot read weights: %s" % (folder, exc)) from exc
    net = build(card["network"], int(card["members"]))
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise ValueError("model %s: weights do not fit the network in its card: %s" % (folder, exc)) from exc
    net.eval()
    return net, card, folder


def onnx_files(name_or_folder: str | os.PathLike) -> tuple[list[Path], dict, Path]:
    """The verified ONNX graphs of a model folder (one per member), its card and the folder; ValueError
    when the card lists none, a file is missing or altered, or the graphs were exported from other
    weights than the folder's."""
    folder = resolve(name_or_folder)
    card = read_card(folder)
    info = card.get("onnx")
    if not info:
        raise ValueError("model %s has no ONNX graphs (re-export it, or use backend='torch')" % folder)
    for fname, finfo in card.get("files", {}).items():  # the weights the graphs stand for are checked too
        if not (folder / fname).is_file() or sha256(folder / fname) != finfo.get("sha256"):
            raise ValueError("model %s: %s is missing or does not match the SHA-256 in its model card (corrupt, "
                             "truncated or modified weights); refusing to load it" % (folder, fname))
    weights = card.get("files", {}).get(WEIGHTS_FILE, {}).get("sha256")
    if info.get("from") != weights:
        raise ValueError("model %s: the ONNX graphs were exported from other weights; re-export them" % folder)
    paths = []
    for fname, digest in sorted(info["files"].items()):
        path = folder / fname
        if not path.is_file() or sha256(path) != digest:
            raise ValueError("model %s: %s is missing or does not match its SHA-256 in the card" % (folder, fname))
        paths.append(path)
    return paths, card, folder


def _with_prior(tr: dict, key: str, fmt: str) -> str:
    """``value`` or, for a run initialised from another model, ``value in this run, total in all``."""
    value, prior = tr.get(key), (tr.get("init") or {}).get(key)
    if value is None or not prior:
        return fmt % value if value is not None else "None"
    return "%s in this run, %s in all" % (fmt % value, fmt % (value + prior))


def card_markdown(card: dict) -> str:
    """Human-readable model card."""
    tr = card.get("training", {})
    lines = ["# Model card: %s" % card.get("name", "?"), "",
             card.get("description", ""), "",
             "| field | value |", "|---|---|",
             "| mode | %s |" % card.get("mode"),
             "| network | %s |" % json.dumps(card.get("network"), sort_keys=True),
             "| members | %s (%s parameters each) |" % (card.get("members"), card.get("params_per_member")),
             "| schedule | %s |" % json.dumps(card.get("schedule"), sort_keys=True),
             "| default sampler / steps | %s / %s |" % (card.get("default_sampler"), card.get("default_steps")),
             "| probes | %s |" % ", ".join(tr.get("probes", [])),
             "| data | %s |" % tr.get("data", ""),
             "| target | %s |" % {"bmode": "the speckle-free B-mode (expected displayed image over scatterer draws)",
                                   "echo": "the echogenicity",
                                   None: "the echogenicity"}.get(tr.get("target"), tr.get("target")),
             "| member seeds | %s |" % tr.get("member_seeds"),
             "| optimiser steps | %s |" % _with_prior(tr, "steps", "%d"),
             "| wall time | %s |" % _with_prior(tr, "wall_minutes", "%.1f min"),
             "| loss | %s |" % tr.get("loss")]
    if tr.get("hardware"):
        prior = (tr.get("init") or {}).get("hardware")
        lines.append("| hardware | %s%s |" % (tr["hardware"], "; before this run: %s" % prior if prior else ""))
    if tr.get("timestep_sampling"):
        lines.append("| timestep sampling | %s |" % tr["timestep_sampling"])
    if tr.get("lr_restarts"):
        restarts = ", ".join("at step %d (%s → %s steps)" % (r["step"], r["prev_max_steps"], r["max_steps"])
                             for r in tr["lr_restarts"])
        lines.append("| learning rate | cosine decay, restarted when the run was resumed with more steps: %s |"
                     % restarts)
    if card.get("brightness"):
        lines.append("| brightness | %s (engine.brightness) |" % card["brightness"])
    unc = card.get("uncertainty")
    if unc:
        lines.append("| uncertainty | total = sqrt((%.3g σ_aleatoric)² + (%.3g σ_epistemic)²), fitted on %s |" % (
            unc.get("aleatoric_scale", 1.0), unc.get("epistemic_scale", 1.0), unc.get("fitted_on", "?")))
    if tr.get("init"):
        ini = tr["init"]
        lines.append("| initialised from | %s (%s optimiser steps, %s min before this run; schedule %s%s) |" % (
            ini.get("model"), ini.get("steps"), ini.get("wall_minutes"),
            json.dumps(ini.get("schedule"), sort_keys=True), "; loss %s" % ini["loss"] if ini.get("loss") else ""))
    lines.append("")
    if isinstance(tr.get("members"), list):
        lines += ["## Members", "", "| seed | steps | wall time | hardware | final loss |", "|---|---|---|---|---|"]
        for m in tr["members"]:
            lines.append("| %s | %s | %.1f min | %s | %s |" % (m.get("seed"), m.get("steps"), m.get("wall_minutes", 0),
                                                             m.get("hardware"), m.get("final_loss")))
        lines.append("")
    for note in card.get("notes", []):
        lines += [note, ""]
    parent = (tr.get("recipe") or {}).get("preview_of")  # a preview network: a stage of its model's recipe
    if tr.get("recipe"):
        where = ("the `preview` stage of the recipe `../train.json`; its own recipe is in `model.json`" if parent
                 else "the recipe is `train.json` beside this card")
        lines += ["Reproduce: `python benchmarks/train_shipped.py --runs runs --data data --only %s` then `--export` "
                  "(%s)." % (parent or card.get("name"), where), ""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["## Measured metrics", "", "```", json.dumps(metrics, indent=2, sort_keys=True), "```", ""]
    lines += ["## Files (SHA-256)", ""]
    for fname, info in card.get("files", {}).items():
        lines.append("- `%s` %s (%d bytes, %s)" % (fname, info["sha256"], info["bytes"], info.get("dtype", "")))
    for fname, digest in sorted((card.get("onnx") or {}).get("files", {}).items()):
        lines.append("- `%s` %s (ONNX opset %s, exported from the fp16 weights above, which it reads from "
                     "that file)" % (fname, digest, card["onnx"].get("opset")))
    return "\n".join(lines) + "\n"
