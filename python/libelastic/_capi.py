"""_capi.py - the one ctypes binding of libelastic's public C API (include/elastic*.h).

Every struct mirror and every function signature the Python package uses is
declared here and nowhere else: the rest of the package (and the golden tests,
the PyTorch tests and tools/bench/peers.py) go through this module.
python/tests/test_layout.py compares each mirror's size and field offsets with
the C compiler's (tests/struct_layout.c), so a header change that is not
followed here fails a test instead of corrupting memory.

The shared library is found, in this order: load_library(path) called before
the first use; the environment variable ELASTIC_LIB; libelastic.so inside this
package (a wheel built by `pip install .` carries it); build/libelastic.so of
the source tree this package sits in (python/libelastic -> ../../build).

ctypes releases the GIL around every call into a CDLL, so C calls of several
Python threads run in parallel; callbacks (training progress) take it back.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ctypes import (c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t,  # noqa: E402
                    c_uint64, c_void_p)

P = ctypes.POINTER
VOIDPP = P(c_void_p)

# --------------------------------------------------------------------- statuses

#: elastic_status values (include/elastic.h), by name.
STATUS: Dict[str, int] = {
    "ELASTIC_OK": 0,
    "ELASTIC_ERR_INVALID_ARG": 1,
    "ELASTIC_ERR_OUT_OF_RANGE": 2,
    "ELASTIC_ERR_EMPTY_HISTORY": 3,
    "ELASTIC_ERR_SHAPE": 4,
    "ELASTIC_ERR_FORMAT": 5,
    "ELASTIC_ERR_IO": 6,
    "ELASTIC_ERR_NO_MEMORY": 7,
    "ELASTIC_ERR_UNSUPPORTED": 8,
    "ELASTIC_ERR_BACKEND": 9,
    "ELASTIC_ERR_INTERNAL": 10,
}

MODEL_KINDS = {"elastic": 0, "sasrec": 1}
ATTENTION_KINDS = {"streaming": 0, "materialized": 1}
DATA_FORMATS = {"auto": 0, "pairs": 1, "movielens": 2, "csv": 3, "sequences": 4, "recbole": 5}
SPLITS = {"valid": 0, "test": 1}
OBJECTIVES = {"prefix": 0, "causal": 1, "cloze": 2}
SAMPLERS = {"uniform": 0, "popularity": 1}

#: The integer keys of elastic_config, in struct order (spec section 1).
CONFIG_INT_KEYS = ("num_items", "max_len", "hidden", "heads", "layers", "experts", "ffn",
                   "mem_subkeys", "mem_key", "mem_topk")


# ---------------------------------------------------------------------- structs

class Config(ctypes.Structure):
    """struct elastic_config (include/elastic.h)."""
    _fields_ = [("model", c_int)] + [(k, c_int64) for k in CONFIG_INT_KEYS] + \
        [("ln_eps", c_double), ("mask_token", c_int64)]


class SessionOptions(ctypes.Structure):
    """struct elastic_session_options (include/elastic.h)."""
    _fields_ = [("struct_size", c_size_t), ("backend", c_char_p), ("device", c_int),
                ("allow_cpu_fallback", c_int), ("num_threads", c_int), ("attention", c_int),
                ("backend_options", c_char_p)]


class BackendInfo(ctypes.Structure):
    """struct elastic_backend_info (include/elastic.h)."""
    _fields_ = [("name", c_char_p), ("compiled", c_int), ("available", c_int),
                ("device_count", c_int), ("accelerator", c_int),
                ("description", ctypes.c_char * 256)]


class RunStats(ctypes.Structure):
    """struct elastic_run_stats (include/elastic.h)."""
    _fields_ = [("nodes", c_int), ("fallback_nodes", c_int), ("copies", c_int),
                ("arena_bytes", c_size_t), ("naive_bytes", c_size_t), ("flops", c_double),
                ("max_tensor_bytes", c_size_t)]


class SynthOptions(ctypes.Structure):
    """struct elastic_synth_options (include/elastic_data.h)."""
    _fields_ = [("users", c_int64), ("items", c_int64), ("clusters", c_int64),
                ("min_len", c_int64), ("max_len", c_int64), ("p_sequential", c_double),
                ("seed", c_uint64)]


class Metrics(ctypes.Structure):
    """struct elastic_metrics (include/elastic_data.h)."""
    _fields_ = [("users", c_int64), ("hr10", c_double), ("hr50", c_double),
                ("ndcg10", c_double), ("ndcg50", c_double), ("mrr", c_double)]


class TrainOptions(ctypes.Structure):
    """struct elastic_train_options (include/elastic_train.h)."""
    _fields_ = [("struct_size", c_size_t), ("lr", c_double), ("beta1", c_double),
                ("beta2", c_double), ("adam_eps", c_double), ("dropout", c_float),
                ("batch_size", c_int), ("samples_per_user", c_int), ("seed", c_uint64),
                ("session", SessionOptions), ("objective", c_int), ("mask_prob", c_float),
                ("last_prob", c_float), ("negatives", c_int), ("sampler", c_int),
                ("full_softmax_max", c_int64)]


class TrainProgress(ctypes.Structure):
    """struct elastic_train_progress (include/elastic_train.h)."""
    _fields_ = [("step", c_int64), ("steps", c_int64), ("examples", c_int64),
                ("examples_total", c_int64), ("loss", c_double), ("seconds", c_double),
                ("targets", c_int64)]


class ConformanceOptions(ctypes.Structure):
    """struct elastic_conformance_options (include/elastic_conformance.h)."""
    _fields_ = [("backends", c_char_p), ("ops", c_char_p), ("seed", c_uint64),
                ("case_index", c_int), ("json", c_int), ("perf", c_int),
                ("whole_model", c_int), ("verbose", c_int)]


#: Every public struct mirrored here, by its C name (for the layout test).
STRUCTS: Dict[str, type] = {
    "elastic_config": Config,
    "elastic_session_options": SessionOptions,
    "elastic_backend_info": BackendInfo,
    "elastic_run_stats": RunStats,
    "elastic_synth_options": SynthOptions,
    "elastic_metrics": Metrics,
    "elastic_train_options": TrainOptions,
    "elastic_train_progress": TrainProgress,
    "elastic_conformance_options": ConformanceOptions,
}

#: void (*elastic_train_progress_fn)(const elastic_train_progress *, void *ctx)
PROGRESS_FN = ctypes.CFUNCTYPE(None, P(TrainProgress), c_void_p)

# ------------------------------------------------------------------- functions

_I32P, _I64P, _F32P, _F64P = P(c_int32), P(c_int64), P(c_float), P(c_double)

#: name -> (restype, argtypes) of every C function the package calls.
SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    # errors, version
    "elastic_status_name": (c_char_p, [c_int]),
    "elastic_last_error": (c_char_p, []),
    "elastic_version": (c_char_p, []),
    # config
    "elastic_config_default": (None, [P(Config)]),
    "elastic_config_set": (c_int, [P(Config), c_char_p, c_char_p]),
    "elastic_config_validate": (c_int, [P(Config)]),
    # models
    "elastic_model_init_random": (c_int, [VOIDPP, P(Config), c_uint64]),
    "elastic_model_load": (c_int, [VOIDPP, c_char_p]),
    "elastic_model_save": (c_int, [c_void_p, c_char_p]),
    "elastic_model_free": (None, [c_void_p]),
    "elastic_model_config": (P(Config), [c_void_p]),
    "elastic_model_tensor_count": (c_int, [c_void_p]),
    "elastic_model_tensor_name": (c_char_p, [c_void_p, c_int]),
    "elastic_model_tensor": (c_int, [c_void_p, c_char_p, P(_F32P), _I64P, P(c_int)]),
    "elastic_model_set_tensor": (c_int, [c_void_p, c_char_p, _F32P, c_int64]),
    "elastic_model_metadata_count": (c_int, [c_void_p]),
    "elastic_model_metadata_key": (c_char_p, [c_void_p, c_int]),
    "elastic_model_metadata": (c_char_p, [c_void_p, c_char_p]),
    "elastic_model_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "elastic_model_parameter_count": (c_int64, [c_void_p]),
    # backends
    "elastic_backend_count": (c_int, []),
    "elastic_backend_get_info": (c_int, [c_int, P(BackendInfo)]),
    # sessions
    "elastic_session_options_default": (None, [P(SessionOptions)]),
    "elastic_session_init": (c_int, [VOIDPP, c_void_p, P(SessionOptions)]),
    "elastic_session_free": (None, [c_void_p]),
    "elastic_session_backend": (c_char_p, [c_void_p]),
    "elastic_session_user_vectors": (c_int, [c_void_p, _I32P, _I64P, c_int, _F32P]),
    "elastic_session_scores": (c_int, [c_void_p, _I32P, _I64P, c_int, _F32P]),
    "elastic_session_recommend": (c_int, [c_void_p, _I32P, _I64P, c_int, c_int, c_int, _I32P,
                                          _F32P]),
    "elastic_session_recommend_candidates": (c_int, [c_void_p, _I32P, _I64P, c_int, _I32P,
                                                     _I64P, c_int, c_int, _I32P, _F32P]),
    "elastic_session_print_plan": (c_int, [c_void_p, c_int, c_int64, c_int, c_void_p]),
    "elastic_session_last_stats": (c_int, [c_void_p, P(RunStats)]),
    # data
    "elastic_dataset_load": (c_int, [VOIDPP, c_char_p, c_int]),
    "elastic_dataset_free": (None, [c_void_p]),
    "elastic_dataset_format": (c_int, [c_void_p]),
    "elastic_data_format_name": (c_char_p, [c_int]),
    "elastic_dataset_num_users": (c_int64, [c_void_p]),
    "elastic_dataset_num_items": (c_int64, [c_void_p]),
    "elastic_dataset_num_events": (c_int64, [c_void_p]),
    "elastic_dataset_user": (c_int, [c_void_p, c_int64, P(_I32P), _I64P]),
    "elastic_dataset_split": (c_int, [c_void_p, c_int64, c_int, P(_I32P), _I64P, _I32P]),
    "elastic_dataset_train_items": (c_int, [c_void_p, c_int64, P(_I32P), _I64P]),
    "elastic_dataset_item_name": (c_char_p, [c_void_p, c_int32]),
    "elastic_dataset_item_id": (c_int32, [c_void_p, c_char_p]),
    "elastic_dataset_user_name": (c_char_p, [c_void_p, c_int64]),
    "elastic_dataset_item_map_json": (c_int, [c_void_p, P(c_void_p)]),
    "elastic_dataset_apply_item_map": (c_int, [c_void_p, c_char_p]),
    "elastic_synth_options_default": (None, [P(SynthOptions)]),
    "elastic_dataset_synth": (c_int, [VOIDPP, P(SynthOptions)]),
    "elastic_dataset_save_pairs": (c_int, [c_void_p, c_char_p]),
    # metrics
    "elastic_rank_of": (c_int64, [_F32P, c_int64, c_int32, _I32P, c_int64]),
    "elastic_evaluate": (c_int, [c_void_p, c_void_p, c_int, c_int64, P(Metrics)]),
    "elastic_evaluate_popularity": (c_int, [c_void_p, c_int, c_int64, P(Metrics)]),
    # training
    "elastic_train_options_default": (None, [P(TrainOptions)]),
    "elastic_trainer_init": (c_int, [VOIDPP, c_void_p, P(TrainOptions)]),
    "elastic_trainer_free": (None, [c_void_p]),
    "elastic_trainer_gradient": (c_int, [c_void_p, _I32P, _I64P, _I32P, c_int, _F64P, _F32P]),
    "elastic_trainer_gradient_positions": (c_int, [c_void_p, _I32P, _I64P, _I32P, c_int, _F64P,
                                                   _F32P]),
    "elastic_trainer_step_positions": (c_int, [c_void_p, _I32P, _I64P, _I32P, c_int, _F64P]),
    "elastic_trainer_step": (c_int, [c_void_p, _I32P, _I64P, _I32P, c_int, _F64P]),
    "elastic_trainer_epoch": (c_int, [c_void_p, c_void_p, PROGRESS_FN, c_void_p,
                                      P(TrainProgress)]),
    "elastic_trainer_epochs": (c_int64, [c_void_p]),
    "elastic_trainer_steps": (c_int64, [c_void_p]),
    "elastic_trainer_fallback_nodes": (c_int, [c_void_p]),
    "elastic_trainer_negatives": (c_int, [c_void_p]),
    "elastic_trainer_set_item_counts": (c_int, [c_void_p, _I64P]),
    "elastic_trainer_save_state": (c_int, [c_void_p, c_char_p]),
    "elastic_trainer_load_state": (c_int, [c_void_p, c_char_p]),
    # conformance
    "elastic_conformance_options_default": (None, [P(ConformanceOptions)]),
    "elastic_conformance_run": (c_int, [P(ConformanceOptions), c_void_p, P(c_int)]),
}

# ------------------------------------------------------------------- loading

_lock = threading.Lock()
_dll: Optional[ctypes.CDLL] = None
_path: Optional[str] = None
_libc: Optional[ctypes.CDLL] = None


def _candidates() -> List[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    env = os.environ.get("ELASTIC_LIB")
    if env:
        return [env]
    found.append(os.path.join(here, "libelastic.so"))
    found.append(os.path.normpath(os.path.join(here, "..", "..", "build", "libelastic.so")))
    return found


def _bind(dll: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(dll, name)
        fn.restype, fn.argtypes = restype, argtypes


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads libelastic (once per process) and declares every signature.

    path: the shared library to use; None searches as the module docstring says.
    Calling it again with another path after the library was loaded raises
    RuntimeError (one process, one libelastic)."""
    global _dll, _path
    with _lock:
        if _dll is not None:
            if path is not None and os.path.realpath(path) != os.path.realpath(_path or ""):
                raise RuntimeError(f"libelastic is already loaded from {_path}; "
                                   f"cannot switch to {path}")
            return _dll
        tried = [path] if path else _candidates()
        errors = []
        for cand in tried:
            if not os.path.exists(cand):
                errors.append(f"{cand}: no such file")
                continue
            try:
                dll = ctypes.CDLL(os.path.abspath(cand))
            except OSError as exc:
                errors.append(f"{cand}: {exc}")
                continue
            _bind(dll)
            _dll, _path = dll, os.path.abspath(cand)
            return dll
        raise OSError("cannot load libelastic: " + "; ".join(errors) +
                      " (pip install . at the repository root, or set ELASTIC_LIB to a built "
                      "libelastic.so)")


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    return _dll if _dll is not None else load_library()


def library_path() -> str:
    """The path of the loaded libelastic.so."""
    lib()
    return _path or ""


def libc() -> ctypes.CDLL:
    """The C library of this process, for FILE streams (fopen / fclose)."""
    global _libc
    if _libc is None:
        c = ctypes.CDLL(None)
        c.fopen.restype, c.fopen.argtypes = c_void_p, [c_char_p, c_char_p]
        c.fclose.restype, c.fclose.argtypes = c_int, [c_void_p]
        c.free.restype, c.free.argtypes = None, [c_void_p]
        _libc = c
    return _libc


# ------------------------------------------------------------------- helpers

def last_error() -> str:
    """elastic_last_error() of this thread."""
    msg = lib().elastic_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def status_name(status: int) -> str:
    name = lib().elastic_status_name(status)
    return name.decode() if name else f"status {status}"


def check(status: int, what: str = "") -> None:
    """Raises the ElasticError subclass of a status other than ELASTIC_OK."""
    if status != 0:
        from .errors import error_for_status
        raise error_for_status(status, status_name(status), last_error(), what)


def ptr(array: Any, ctype: Any) -> Any:
    """A ctypes pointer to a contiguous numpy array's data (NULL for None)."""
    if array is None:
        return None
    return array.ctypes.data_as(P(ctype))


def encode(text: Optional[str]) -> Optional[bytes]:
    return None if text is None else str(text).encode("utf-8")


def decode(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else raw.decode("utf-8", "replace")


class _Captured:
    """What capture_stderr() caught (value, set when the block ends)."""
    value = ""


@contextlib.contextmanager
def capture_stderr() -> Iterator[_Captured]:
    """Redirects file descriptor 2 (C's stderr) to a temporary file for the block
    and keeps what was written; other threads' stderr output is caught too."""
    import sys
    import tempfile
    got = _Captured()
    with _stderr_lock, tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield got
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            got.value = tmp.read().decode("utf-8", "replace")


_stderr_lock = threading.Lock()


def with_stream(fn: Callable[[int], int], what: str) -> str:
    """Runs fn(FILE *) on a temporary file and returns what it wrote (for the C
    calls that print: plans, conformance reports)."""
    import tempfile
    c = libc()
    fd, path = tempfile.mkstemp(prefix="libelastic-", suffix=".txt")
    os.close(fd)
    try:
        stream = c.fopen(path.encode(), b"w")
        if not stream:
            raise OSError(f"{what}: cannot open {path}")
        try:
            status = fn(stream)
        finally:
            c.fclose(stream)
        check(status, what)
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    finally:
        os.unlink(path)
