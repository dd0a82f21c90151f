"""session.py - sessions: a model running on a backend (elastic_session_* of
include/elastic.h), with numpy in and out: top-K recommendations (optionally
among candidates), full score rows, user vectors, execution plans.

Histories are given as a list of sequences (item ids oldest first), a 2-D
array [B, n] (B histories of n items), or a CSR pair, a tuple (items,
offsets) of numpy arrays: user b's items are items[offsets[b]:offsets[b+1]].
When the model has an item map, ids are the data's own (ints or strings) in
and out; pass use_item_map=False for the model's ids 1..I.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _capi
from ._capi import check, decode, encode
from .errors import InvalidArgError, OutOfRangeError
from .model import Model, _as_int32

Histories = Union[Sequence[Sequence[Any]], np.ndarray, Tuple[np.ndarray, np.ndarray]]

def _is_csr(h: Any) -> bool:
    if not (isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], np.ndarray)
            and isinstance(h[1], np.ndarray)):
        return False
    items, offsets = h
    return (items.ndim == 1 and offsets.ndim == 1 and offsets.dtype.kind in "iu"
            and offsets.size >= 1 and int(offsets[0]) == 0 and int(offsets[-1]) == items.size)


def as_csr(histories: Histories, model: Optional[Model] = None,
           use_item_map: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Histories in any accepted form -> (items int32 [total], offsets int64 [B+1]),
    through the model's item map when it has one and use_item_map is set."""
    mapped = model is not None and use_item_map and model._item_map() is not None
    if _is_csr(histories):
        raw, offsets = histories  # type: ignore[misc]
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.size > 1 and np.any(offsets[1:] < offsets[:-1]):
            raise InvalidArgError("offsets must not decrease")
    elif isinstance(histories, np.ndarray):
        if histories.ndim != 2:
            raise InvalidArgError(f"a histories array must be 2-D [B, n], got shape "
                                  f"{histories.shape}")
        B, n = histories.shape
        raw = histories.reshape(-1)
        offsets = np.arange(0, B * n + 1, max(n, 1), dtype=np.int64) if n else \
            np.zeros(B + 1, dtype=np.int64)
    else:
        if isinstance(histories, (str, bytes)) or not hasattr(histories, "__len__"):
            raise TypeError("histories must be a list of sequences, a 2-D array or a tuple "
                            "(items, offsets) of numpy arrays")
        hs: List[Any] = list(histories)
        lengths = np.fromiter((len(h) for h in hs), dtype=np.int64, count=len(hs))
        offsets = np.zeros(len(hs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        if hs and all(isinstance(h, np.ndarray) for h in hs):
            raw = np.concatenate(hs) if total else np.zeros(0, dtype=np.int32)
        elif mapped:
            raw = np.array(list(itertools.chain.from_iterable(hs)), dtype=object) if total \
                else np.zeros(0, dtype=np.int32)
            if raw.size and all(isinstance(v, (int, np.integer)) for v in raw[:64]):
                try:
                    raw = raw.astype(np.int64)
                except (TypeError, ValueError, OverflowError):
                    pass
        else:
            try:
                raw = np.array(list(itertools.chain.from_iterable(hs))) if total else \
                    np.zeros(0, dtype=np.int32)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"item ids must be integers ({exc})") from None
            if raw.dtype == object:   # ints beyond int64
                raise OutOfRangeError("an item id does not fit in int32")
    if mapped:
        assert model is not None
        items = model._item_map().to_model(raw)  # type: ignore[union-attr]
    else:
        items = _as_int32(np.asarray(raw))
    if offsets.size - 1 > np.iinfo(np.int32).max:
        raise InvalidArgError("too many users in one call (at most 2^31 - 1)")
    return items, offsets


def _out_array(out: Optional[np.ndarray], shape: Tuple[int, int]) -> np.ndarray:
    """`out` checked (float32, C-contiguous, this shape), or a new array."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or \
            not out.flags.c_contiguous or not out.flags.writeable or out.shape != shape:
        raise InvalidArgError(f"out must be a writeable C-contiguous float32 array of shape "
                              f"{shape}")
    return out


class Session:
    """A model running on one backend; use it from one thread at a time (a lock
    serialises concurrent calls), one session per thread for parallel work.

    Session(model, backend="auto", device=0, threads=None, allow_fallback=False,
    attention="streaming", backend_options=None) -- backend: "cpu", "opencl",
    "cuda" or "auto"; threads: CPU threads (None: OpenMP's default);
    allow_fallback: run ops the backend lacks on the CPU; attention: "streaming"
    or "materialized"; backend_options: "cpu.isa=avx2,opencl.device=..."
    (README, Backend options).  Use it as a context manager or call close()."""

    def __init__(self, model: Model, backend: str = "auto", device: int = 0,
                 threads: Optional[int] = None, allow_fallback: bool = False,
                 attention: str = "streaming", backend_options: Optional[str] = None):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a libelastic.Model, got {type(model).__name__}")
        if attention not in _capi.ATTENTION_KINDS:
            raise InvalidArgError(f"attention must be one of {sorted(_capi.ATTENTION_KINDS)}, "
                                  f"got {attention!r}")
        self._lib = _capi.lib()
        self.model = model
        self._lock = threading.Lock()
        self._options = dict(backend=backend, device=device, threads=threads,
                             allow_fallback=allow_fallback, attention=attention,
                             backend_options=backend_options)
        o = _capi.SessionOptions()
        self._lib.elastic_session_options_default(o)
        # the strings must outlive the call: keep them on the object
        self._backend_b = encode(backend)
        self._backend_options_b = encode(backend_options) if backend_options else None
        o.backend = self._backend_b
        o.device = int(device)
        o.allow_cpu_fallback = int(bool(allow_fallback))
        o.num_threads = int(threads or 0)
        o.attention = _capi.ATTENTION_KINDS[attention]
        o.backend_options = self._backend_options_b
        self._handle = _capi.c_void_p()
        self._handle_set = False
        check(self._lib.elastic_session_init(self._handle, model._ptr(), o), "session")
        self._handle_set = True
        model._users.add(self)

    def _is_open(self) -> bool:
        return bool(getattr(self, "_handle_set", False))

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Frees the session (idempotent)."""
        if getattr(self, "_handle_set", False):
            self._handle_set = False
            self._lib.elastic_session_free(self._handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _h(self) -> _capi.c_void_p:
        if not self._handle_set:
            raise ValueError("the session is closed")
        return self._handle

    # ------------------------------------------------------------ info
    @property
    def backend(self) -> str:
        """The backend the session runs on, e.g. "cpu (avx512)"."""
        return decode(self._lib.elastic_session_backend(self._h())) or ""

    def last_stats(self) -> Dict[str, Any]:
        """What the last run did: nodes, fallback_nodes, copies, arena_bytes,
        naive_bytes, flops, max_tensor_bytes."""
        s = _capi.RunStats()
        check(self._lib.elastic_session_last_stats(self._h(), s), "last_stats")
        return {f[0]: getattr(s, f[0]) for f in s._fields_}

    def describe(self) -> Dict[str, Any]:
        """The session as a dict: the backend in use, the options asked for, the
        model's config and the statistics of the last run."""
        return {"backend": self.backend, "requested": dict(self._options),
                "model": self.model.config, "item_map": self.model._item_map() is not None,
                "last_run": self.last_stats(), "library": _capi.library_path()}

    def plan(self, batch: int, length: int, top_k: int = 10) -> str:
        """The execution plan for `batch` users of history length `length`: one
        line per node (op, backend, shapes, memory)."""
        h = self._h()
        with self._lock:
            return _capi.with_stream(
                lambda f: self._lib.elastic_session_print_plan(h, int(batch), int(length),
                                                               int(top_k), f), "plan")

    # ------------------------------------------------------------ runs
    def user_vectors(self, histories: Histories, use_item_map: bool = True,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
        """User vectors hu (spec step 4): float32 [B, d] (written into `out` when
        given: a C-contiguous float32 array of that shape)."""
        items, offsets = as_csr(histories, self.model, use_item_map)
        B = offsets.size - 1
        out = _out_array(out, (B, self.model.hidden))
        if B == 0:
            return out
        with self._lock:
            check(self._lib.elastic_session_user_vectors(
                self._h(), _capi.ptr(items, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
                B, _capi.ptr(out, _capi.c_float)), "user_vectors")
        return out

    def scores(self, histories: Histories, use_item_map: bool = True,
               out: Optional[np.ndarray] = None) -> np.ndarray:
        """Scores of every item (spec step 5): float32 [B, I], column v-1 = model
        item v (written into `out` when given)."""
        items, offsets = as_csr(histories, self.model, use_item_map)
        return self._scores_csr(items, offsets, out)

    def _scores_csr(self, items: np.ndarray, offsets: np.ndarray,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
        B = offsets.size - 1
        out = _out_array(out, (B, self.model.num_items))
        if B == 0:
            return out
        with self._lock:
            check(self._lib.elastic_session_scores(
                self._h(), _capi.ptr(items, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
                B, _capi.ptr(out, _capi.c_float)), "scores")
        return out

    def recommend(self, histories: Histories, k: int = 10, exclude_history: bool = True,
                  candidates: Optional[Any] = None, use_item_map: bool = True
                  ) -> Tuple[np.ndarray, np.ndarray]:
        """The k best items per user: (ids [B, k], scores float32 [B, k]).

        Ties go to the smaller model id; exclude_history leaves each user's whole
        history out.  candidates: None (all items), one sequence of ids for every
        user, or one sequence per user (a list, or a 2-D array [B, C]); ids
        outside the model raise OutOfRangeError.  Where fewer than k items
        remain, the row ends with padding: score -inf and id 0 (model ids), -1
        (an item map of integers) or '' (an item map of other names).  Ids are
        int32 model ids, or the data's own ids through the model's item map
        (int64 when every name is an integer, else str)."""
        k = int(k)
        if k < 1:
            raise InvalidArgError(f"k must be >= 1, got {k}")
        if k > self.model.num_items:           # as the library says it, candidates or not
            raise OutOfRangeError(f"top_k {k} outside 1..{self.model.num_items}")
        items, offsets = as_csr(histories, self.model, use_item_map)
        B = offsets.size - 1
        if candidates is not None:
            ids, sc = self._recommend_candidates(items, offsets, k, exclude_history,
                                                 candidates, use_item_map)
        else:
            ids = np.zeros((B, k), dtype=np.int32)
            sc = np.zeros((B, k), dtype=np.float32)
            if B:
                with self._lock:
                    check(self._lib.elastic_session_recommend(
                        self._h(), _capi.ptr(items, _capi.c_int32),
                        _capi.ptr(offsets, _capi.c_int64), B, k, int(bool(exclude_history)),
                        _capi.ptr(ids, _capi.c_int32), _capi.ptr(sc, _capi.c_float)),
                        "recommend")
        if use_item_map and self.model._item_map() is not None:
            return self.model.from_model_ids(ids), sc
        return ids, sc

    def _candidate_rows(self, candidates: Any, B: int, use_item_map: bool):
        """Candidates -> a function b -> sorted unique model ids of user b."""
        I = self.model.num_items
        conv = (self.model.to_model_ids if use_item_map else
                (lambda v: _as_int32(np.asarray(v).reshape(-1))))

        def clean(v: Any) -> np.ndarray:
            ids = np.unique(conv(v))
            if ids.size and (ids[0] < 1 or ids[-1] > I):
                bad = ids[0] if ids[0] < 1 else ids[-1]
                raise OutOfRangeError(f"candidate item {int(bad)} outside 1..{I}")
            return ids

        arr = candidates if isinstance(candidates, np.ndarray) else None
        if arr is None:
            seq = list(candidates)
            nested = bool(seq) and all(isinstance(v, (list, tuple, np.ndarray, range))
                                       for v in seq)
            if nested:
                if len(seq) != B:
                    raise InvalidArgError(f"{len(seq)} candidate lists for {B} users")
                rows = [clean(v) for v in seq]
                return lambda b: rows[b]
            shared = clean(seq)
            return lambda b: shared
        if arr.ndim == 1:
            shared = clean(arr)
            return lambda b: shared
        if arr.ndim == 2:
            if arr.shape[0] != B:
                raise InvalidArgError(f"candidates of shape {arr.shape} for {B} users")
            rows = [clean(r) for r in arr]
            return lambda b: rows[b]
        raise InvalidArgError(f"candidates must be 1-D or 2-D, got shape {arr.shape}")

    def _recommend_candidates(self, items: np.ndarray, offsets: np.ndarray, k: int,
                              exclude_history: bool, candidates: Any, use_item_map: bool
                              ) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k among candidates: elastic_session_recommend_candidates (only the
        candidates are scored; the library's rule: larger score first, NaN last,
        ties by the smaller id)."""
        B = offsets.size - 1
        row = self._candidate_rows(candidates, B, use_item_map)
        ids = np.zeros((B, k), dtype=np.int32)
        sc = np.full((B, k), -np.inf, dtype=np.float32)
        if B == 0:
            return ids, sc
        rows = [row(b) for b in range(B)]
        c_off = np.zeros(B + 1, dtype=np.int64)
        np.cumsum([r.size for r in rows], out=c_off[1:])
        c_items = (np.concatenate(rows).astype(np.int32, copy=False) if c_off[-1]
                   else np.zeros(1, dtype=np.int32))
        with self._lock:
            check(self._lib.elastic_session_recommend_candidates(
                self._h(), _capi.ptr(items, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
                B, _capi.ptr(c_items, _capi.c_int32), _capi.ptr(c_off, _capi.c_int64), k,
                int(bool(exclude_history)), _capi.ptr(ids, _capi.c_int32),
                _capi.ptr(sc, _capi.c_float)), "recommend")
        return ids, sc

    def __repr__(self) -> str:
        state = self.backend if self._handle_set else "closed"
        return f"<libelastic.Session {state} {self.model!r}>"
