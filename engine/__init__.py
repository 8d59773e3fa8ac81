"""USClean engine (torch, no Qt): IR-SDE schedule and samplers, networks, the despeckling ensemble,
training and model files.  Public API::

    from engine import load_ensemble
    ens = load_ensemble("multiprobe")           # or "l11-5v", "baseline", or a `usclean train` folder
    res = ens.despeckle(frames)                 # res.mean, res.std
"""
from .ensemble import Cancelled, DespeckleResult, Ensemble, load_ensemble, validate_frames

__all__ = ["Cancelled", "DespeckleResult", "Ensemble", "load_ensemble", "validate_frames"]
