"""data.py - interaction logs, synthetic logs, leave-one-out splits and the
evaluation metrics of spec section 6 (include/elastic_data.h) in Python.

    data = libelastic.read_log("ratings.dat")             # or libelastic.synth(users=2000)
    metrics = libelastic.evaluate(model, data, split="test")   # {"hr10": ..., ...}
"""
from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _capi
from ._capi import check, decode, encode
from .errors import InvalidArgError
from .model import Model

PathLike = Union[str, "os.PathLike[str]"]


def _split_code(split: str) -> int:
    if split not in _capi.SPLITS:
        raise InvalidArgError(f"split must be 'valid' or 'test', got {split!r}")
    return _capi.SPLITS[split]


def _metrics_dict(m: _capi.Metrics) -> Dict[str, float]:
    return {"users": int(m.users), "hr10": m.hr10, "hr50": m.hr50, "ndcg10": m.ndcg10,
            "ndcg50": m.ndcg50, "mrr": m.mrr}


class Dataset:
    """An interaction log held by libelastic: per user, items renumbered 1..I by
    first appearance (time order), the original ids, and the leave-one-out
    split of spec section 5 (last item = test target, the one before =
    validation target).  Users are numbered 0..U-1."""

    def __init__(self, handle: Optional[_capi.c_void_p], source: str = ""):
        """Wraps a handle owned from now on (use read_log or synth)."""
        self._lib = _capi.lib()
        self._handle = handle
        self.source = source

    @classmethod
    def load(cls, path: PathLike, format: str = "auto") -> "Dataset":
        """Reads a log: "user item" lines in time order, MovieLens ratings.dat or
        CSV with a header, one user per line, RecBole .inter (format "auto",
        "pairs", "movielens", "csv", "sequences", "recbole"; Dataset.format
        says what "auto" chose).
        Malformed input raises FormatError with "path:line:" in the message."""
        if format not in _capi.DATA_FORMATS:
            raise InvalidArgError(f"format must be one of {sorted(_capi.DATA_FORMATS)}")
        p = os.fspath(path)
        h = _capi.c_void_p()
        check(_capi.lib().elastic_dataset_load(h, encode(p), _capi.DATA_FORMATS[format]), p)
        return cls(h, p)

    @classmethod
    def synth(cls, users: int = 2000, items: int = 1000, clusters: int = 20, min_len: int = 20,
              max_len: int = 80, p_sequential: float = 0.5, seed: int = 1) -> "Dataset":
        """The deterministic synthetic log of `elastic synth` (same options, same
        log): interest clusters with Zipf popularity and planted successors."""
        o = _capi.SynthOptions()
        _capi.lib().elastic_synth_options_default(o)
        o.users, o.items, o.clusters = int(users), int(items), int(clusters)
        o.min_len, o.max_len, o.p_sequential, o.seed = int(min_len), int(max_len), \
            float(p_sequential), int(seed)
        h = _capi.c_void_p()
        check(_capi.lib().elastic_dataset_synth(h, o), "synth")
        return cls(h, "synthetic")

    def close(self) -> None:
        """Frees the dataset now (idempotent)."""
        h, self._handle = getattr(self, "_handle", None), None
        if h:
            self._lib.elastic_dataset_free(h)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _h(self) -> _capi.c_void_p:
        if not self._handle:
            raise ValueError("the dataset is closed")
        return self._handle

    # ------------------------------------------------------------ sizes
    @property
    def format(self) -> str:
        """The format the log was read as ("auto" resolved; "pairs" for synthetic data)."""
        code = int(self._lib.elastic_dataset_format(self._h()))
        return {v: k for k, v in _capi.DATA_FORMATS.items()}.get(code, str(code))

    @property
    def num_users(self) -> int:
        return int(self._lib.elastic_dataset_num_users(self._h()))

    @property
    def num_items(self) -> int:
        return int(self._lib.elastic_dataset_num_items(self._h()))

    @property
    def num_events(self) -> int:
        return int(self._lib.elastic_dataset_num_events(self._h()))

    def __len__(self) -> int:
        return self.num_users

    # ------------------------------------------------------------ users and items
    def user(self, user: int) -> np.ndarray:
        """A user's whole sequence (ids 1..I, time order), int32 copy."""
        p = _capi.P(_capi.c_int32)()
        n = _capi.c_int64()
        check(self._lib.elastic_dataset_user(self._h(), int(user), p, n), f"user {user}")
        return np.ctypeslib.as_array(p, shape=(n.value,)).copy() if n.value else \
            np.zeros(0, dtype=np.int32)

    def histories(self) -> Tuple[np.ndarray, np.ndarray]:
        """Every user's whole sequence as a CSR pair (items int32, offsets int64)."""
        U = self.num_users
        seqs = [self.user(u) for u in range(U)]
        offsets = np.zeros(U + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        items = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int32)
        return items.astype(np.int32, copy=False), offsets

    def split(self, user: int, split: str = "test") -> Tuple[np.ndarray, int]:
        """(history, target) of a user on the validation or test split; raises
        OutOfRangeError for a user with fewer than 3 events."""
        p = _capi.P(_capi.c_int32)()
        n = _capi.c_int64()
        target = _capi.c_int32()
        check(self._lib.elastic_dataset_split(self._h(), int(user), _split_code(split), p, n,
                                              target), f"user {user}")
        hist = np.ctypeslib.as_array(p, shape=(n.value,)).copy() if n.value else \
            np.zeros(0, dtype=np.int32)
        return hist, int(target.value)

    def train_items(self, user: int) -> np.ndarray:
        """A user's training items (all but the last two events)."""
        p = _capi.P(_capi.c_int32)()
        n = _capi.c_int64()
        check(self._lib.elastic_dataset_train_items(self._h(), int(user), p, n), f"user {user}")
        return np.ctypeslib.as_array(p, shape=(n.value,)).copy() if n.value else \
            np.zeros(0, dtype=np.int32)

    def item_name(self, item: int) -> Optional[str]:
        """The original id of item 1..I (None outside)."""
        return decode(self._lib.elastic_dataset_item_name(self._h(), int(item)))

    def item_id(self, name: Any) -> int:
        """The id 1..I of an original item id (0 if unknown)."""
        return int(self._lib.elastic_dataset_item_id(self._h(), encode(str(name))))

    def user_name(self, user: int) -> Optional[str]:
        """The original id of user 0..U-1 (None outside)."""
        return decode(self._lib.elastic_dataset_user_name(self._h(), int(user)))

    def item_map_json(self) -> str:
        """The item map as a model's "item_ids" metadata value (a JSON array)."""
        out = _capi.c_void_p()
        check(self._lib.elastic_dataset_item_map_json(self._h(), out), "item map")
        assert out.value is not None
        try:
            return ctypes.string_at(out.value).decode("utf-8")
        finally:
            _capi.libc().free(out)

    @property
    def item_ids(self) -> List[str]:
        """The original ids of items 1..I."""
        return [str(v) for v in json.loads(self.item_map_json())]

    def apply_item_map(self, model_or_map: Union[Model, str, List[str]]) -> None:
        """Renumbers the items by a model's item map (or a map given as JSON text or
        a list of ids); an item missing from the map raises OutOfRangeError."""
        if isinstance(model_or_map, Model):
            ids = model_or_map.metadata.get("item_ids")
            if ids is None:
                raise InvalidArgError("the model has no item map")
            text = ids
        elif isinstance(model_or_map, str):
            text = model_or_map
        else:
            text = json.dumps([str(v) for v in model_or_map])
        check(self._lib.elastic_dataset_apply_item_map(self._h(), encode(text)), "item map")

    def save_pairs(self, path: PathLike) -> None:
        """Writes the log as "user item" lines (original ids), users in order."""
        p = os.fspath(path)
        check(self._lib.elastic_dataset_save_pairs(self._h(), encode(p)), p)

    def __repr__(self) -> str:
        if not self._handle:
            return "<libelastic.Dataset (closed)>"
        return (f"<libelastic.Dataset {self.source}: {self.num_users} users, {self.num_items} "
                f"items, {self.num_events} events>")


def read_log(path: PathLike, format: str = "auto") -> Dataset:
    """Reads an interaction log (see Dataset.load)."""
    return Dataset.load(path, format)


def synth(users: int = 2000, items: int = 1000, clusters: int = 20, min_len: int = 20,
          max_len: int = 80, p_sequential: float = 0.5, seed: int = 1) -> Dataset:
    """The synthetic log of `elastic synth` (see Dataset.synth)."""
    return Dataset.synth(users, items, clusters, min_len, max_len, p_sequential, seed)


def evaluate(model: Any, data: Dataset, split: str = "test", max_users: Optional[int] = None,
             backend: str = "cpu", threads: Optional[int] = None, **session_options: Any
             ) -> Dict[str, float]:
    """Full-ranking metrics of spec section 6 (users, hr10, hr50, ndcg10, ndcg50,
    mrr) of a model on a split, the split's history left out, as `elastic eval`.

    model: a Model (a session is opened with backend, threads and
    session_options) or a Session.  When the model has an item map the
    dataset is renumbered by it first (Dataset.apply_item_map), as `elastic
    eval` does.  max_users: only the first N users with that split."""
    from .session import Session
    own = not isinstance(model, Session)
    m = model if own else model.model
    if not isinstance(m, Model):
        raise TypeError("model must be a libelastic.Model or Session")
    ids = m.metadata.get("item_ids")
    if ids is not None and ids != data.item_map_json():
        data.apply_item_map(ids)
    session: Session = Session(m, backend=backend, threads=threads, **session_options) \
        if own else model
    try:
        out = _capi.Metrics()
        with session._lock:
            check(_capi.lib().elastic_evaluate(session._h(), data._h(), _split_code(split),
                                               int(max_users or 0), out), "evaluate")
        return _metrics_dict(out)
    finally:
        if own:
            session.close()


def evaluate_popularity(data: Dataset, split: str = "test",
                        max_users: Optional[int] = None) -> Dict[str, float]:
    """The popularity ranking's metrics on the same users and targets as evaluate."""
    out = _capi.Metrics()
    check(_capi.lib().elastic_evaluate_popularity(data._h(), _split_code(split),
                                                  int(max_users or 0), out), "popularity")
    return _metrics_dict(out)


def rank_of(scores: Any, target: int, exclude: Optional[Any] = None) -> int:
    """The rank (from 1) of item `target` among items 1..I by scores (scores[v-1]
    is item v), ties by the smaller id, leaving out the items in exclude; 0 for
    a target outside 1..I (elastic_rank_of)."""
    s = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    ex = None if exclude is None else np.ascontiguousarray(exclude, dtype=np.int32).reshape(-1)
    return int(_capi.lib().elastic_rank_of(
        _capi.ptr(s, _capi.c_float), s.size, int(target),
        _capi.ptr(ex, _capi.c_int32) if ex is not None and ex.size else None,
        0 if ex is None else ex.size))
