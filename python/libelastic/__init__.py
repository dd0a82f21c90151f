"""libelastic - Python binding of libelastic, the C library that runs the ELASTIC
sequential recommender and the SASRec baseline on CPU, OpenCL and CUDA.

    import libelastic
    model = libelastic.Model.load("model.st")
    with libelastic.Session(model, backend="auto") as s:
        ids, scores = s.recommend([[1, 2, 3], [10, 20, 30, 40]], k=10)

Modules: model (Model, configs, item maps), session (Session), data (logs,
synthetic data, metrics), train (Trainer, train), errors (ElasticError and one
subclass per status); optional: libelastic.dask (scale-out on Dask) and
libelastic.torch (the PyTorch port).  Every call into C goes through one ctypes
binding, libelastic._capi, which releases the GIL.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _capi
from ._capi import load_library, library_path
from .data import Dataset, evaluate, evaluate_popularity, rank_of, read_log, synth
from .errors import (BackendError, ElasticError, EmptyHistoryError, FormatError, InternalError,
                     InvalidArgError, IoError, NoMemoryError, OutOfRangeError, ShapeError,
                     UnsupportedError)
from .model import CONFIG_KEYS, Model, validate_config
from .session import Session, as_csr
from .train import Trainer, train

__all__ = [
    "Model", "Session", "Dataset", "Trainer", "read_log", "synth", "evaluate",
    "evaluate_popularity", "rank_of", "train", "backends", "conformance", "version",
    "validate_config", "as_csr", "load_library", "library_path", "CONFIG_KEYS",
    "ElasticError", "InvalidArgError", "OutOfRangeError", "EmptyHistoryError", "ShapeError",
    "FormatError", "IoError", "NoMemoryError", "UnsupportedError", "BackendError",
    "InternalError",
]

__version__ = "0.1.0"


def version() -> str:
    """The C library's version string (elastic_version())."""
    return _capi.decode(_capi.lib().elastic_version()) or ""


def backends() -> List[Dict[str, Any]]:
    """What this machine has: one dict per backend compiled into the library
    (name, compiled, available, device_count, accelerator, description)."""
    lib = _capi.lib()
    out = []
    for i in range(lib.elastic_backend_count()):
        info = _capi.BackendInfo()
        _capi.check(lib.elastic_backend_get_info(i, info), "backend info")
        out.append({"name": _capi.decode(info.name), "compiled": bool(info.compiled),
                    "available": bool(info.available), "device_count": int(info.device_count),
                    "accelerator": bool(info.accelerator),
                    "description": info.description.decode("utf-8", "replace")})
    return out


def conformance(backends: Optional[Union[str, Sequence[str]]] = None,
                ops: Optional[Union[str, Sequence[str]]] = None, seed: Optional[int] = None,
                case: Optional[int] = None, perf: bool = False, whole_model: bool = True,
                verbose: bool = False) -> Dict[str, Any]:
    """Runs the cross-backend conformance suite (elastic_conformance_run) and
    returns its JSON report as a dict (keys seed, failures, backends, ops,
    cases, self_checks, models, and text: the text report).

    backends: e.g. ["cpu:avx2", "opencl"] (None: every available backend and
    CPU instruction set); ops: op names of core/graph/ops.def (None: all);
    case: only this case index of each op; perf: also time each op; whole_model:
    also run whole models.  Failed checks are counted in report["failures"];
    an unknown backend or op raises an ElasticError."""
    lib = _capi.lib()
    o = _capi.ConformanceOptions()
    lib.elastic_conformance_options_default(o)

    def as_list(v: Optional[Union[str, Sequence[str]]]) -> Optional[bytes]:
        if v is None:
            return None
        return _capi.encode(v if isinstance(v, str) else ",".join(v))

    keep = (as_list(backends), as_list(ops))  # alive for the call
    o.backends, o.ops = keep
    if seed is not None:
        o.seed = int(seed)
    o.case_index = -1 if case is None else int(case)
    o.json, o.perf, o.whole_model, o.verbose = 1, int(perf), int(whole_model), int(verbose)
    failures = _capi.c_int(0)
    # In JSON mode the library writes its text report to stderr: it is captured
    # (file descriptor 2, for the duration of the call) and returned as "text".
    with _capi.capture_stderr() as text:
        raw = _capi.with_stream(lambda f: lib.elastic_conformance_run(o, f, failures),
                                "conformance")
    report: Dict[str, Any] = json.loads(raw[raw.index("{"):])
    report.setdefault("failures", failures.value)
    report["text"] = text.value
    return report
