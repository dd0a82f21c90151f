"""model.py - libelastic models in Python: load, create, save, inspect and edit
ELASTIC and SASRec models (elastic_model_* of include/elastic.h), configs
(spec section 1) as dicts, and the item map that lets a trained model serve in
the data's own item ids.
"""
from __future__ import annotations

import json
import os
import threading
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _capi
from ._capi import check, decode, encode
from .errors import OutOfRangeError

PathLike = Union[str, "os.PathLike[str]"]

_KIND_NAMES = {v: k for k, v in _capi.MODEL_KINDS.items()}
#: Every config key of spec section 1, in the order of elastic_config.
CONFIG_KEYS = ("model",) + _capi.CONFIG_INT_KEYS + ("ln_eps", "mask_token")


def _config_dict(c: _capi.Config) -> Dict[str, Any]:
    out: Dict[str, Any] = {"model": _KIND_NAMES.get(c.model, str(c.model))}
    for key in _capi.CONFIG_INT_KEYS:
        out[key] = int(getattr(c, key))
    out["ln_eps"] = float(c.ln_eps)
    out["mask_token"] = int(c.mask_token)
    return out


def _config_struct(config: Mapping[str, Any]) -> _capi.Config:
    """A validated elastic_config from a dict of spec section 1 keys (values as
    numbers or strings); a bad or unknown key raises an ElasticError naming it."""
    lib = _capi.lib()
    c = _capi.Config()
    lib.elastic_config_default(c)
    for key, value in config.items():
        if isinstance(value, bool):
            value = int(value)
        text = repr(value) if isinstance(value, float) else str(value)
        check(lib.elastic_config_set(c, encode(key), encode(text)), f"config key {key!r}")
    check(lib.elastic_config_validate(c), "config")
    return c


def validate_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The config with the spec's defaults filled in (ffn = 4d, mem_key = d),
    checked by the library; raises FormatError naming the offending key."""
    return _config_dict(_config_struct(config))


class _ItemMap:
    """The item map of a model ("item_ids" metadata): original ids <-> model ids
    1..I, vectorised for numpy arrays."""

    def __init__(self, names: List[str]):
        self.names = names
        self.index: Dict[str, int] = {n: i + 1 for i, n in enumerate(names)}
        numeric = all(n.isdigit() and (n == "0" or not n.startswith("0")) for n in names)
        self.numeric = numeric and bool(names)
        self.lut: Optional[np.ndarray] = None
        self._pd_index: Any = None
        if self.numeric:
            values = np.array([int(n) for n in names], dtype=np.int64)
            self.values = values
            top = int(values.max()) if len(values) else 0
            if top < max(1 << 24, 16 * len(values)):   # a dense table when it is small
                self.lut = np.zeros(top + 1, dtype=np.int32)
                self.lut[values] = np.arange(1, len(values) + 1, dtype=np.int32)
        else:
            self.str_names = np.array(names, dtype=str)

    def to_model_lenient(self, values: Any) -> np.ndarray:
        """Original ids (ints or strings, any sequence or array) -> model ids,
        int32, 0 for an id the map does not know."""
        arr = np.asarray(values)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int32)
        if self.lut is not None and arr.dtype.kind in "iu":
            ok = (arr >= 0) & (arr < len(self.lut))
            out = np.zeros(arr.shape, dtype=np.int32)
            out[ok] = self.lut[arr[ok]]
            return out
        if arr.dtype.kind in "iu":
            keys = arr.astype(str)
        elif arr.dtype.kind == "f":
            keys = np.array([str(int(v)) if float(v).is_integer() else str(v) for v in arr])
        else:
            keys = arr.astype(str) if arr.dtype.kind != "U" else arr
        try:
            import pandas as pd
        except ImportError:
            get = self.index.get
            return np.fromiter((get(str(k), 0) for k in keys), dtype=np.int32, count=arr.size)
        if self._pd_index is None:
            self._pd_index = pd.Index(self.names)
        return (self._pd_index.get_indexer(keys) + 1).astype(np.int32)

    def to_model(self, values: Any) -> np.ndarray:
        """Original ids -> model ids (int32); an unknown id raises OutOfRangeError."""
        arr = np.asarray(values).reshape(-1)
        out = self.to_model_lenient(arr)
        bad = np.flatnonzero(out == 0)
        if bad.size:
            raise OutOfRangeError(f"item {arr[bad[0]]!r} is not in the model's item map")
        return out

    def to_original(self, ids: np.ndarray) -> np.ndarray:
        """Model ids (0 = padding) -> original ids: int64 (-1 for padding) when every
        name is a decimal integer, else str ('' for padding)."""
        ids = np.asarray(ids)
        if self.numeric:
            table = np.concatenate([np.array([-1], dtype=np.int64), self.values])
        else:
            table = np.concatenate([np.array([""], dtype=self.str_names.dtype), self.str_names])
        return table[ids]


class Model:
    """An ELASTIC or SASRec model held by libelastic (read-only once sessions use it;
    a model may be shared by several threads, each with its own Session).

    Create one with Model.load(path) or Model.init_random(config, seed)."""

    def __init__(self, handle: Optional[_capi.c_void_p], path: Optional[str] = None):
        """Wraps a handle owned from now on by this object (use load or init_random)."""
        self._lib = _capi.lib()
        self._handle = handle
        self.path = path
        self._map: Optional[_ItemMap] = None
        self._map_loaded = False
        self._map_lock = threading.Lock()
        self._users: "weakref.WeakSet[Any]" = weakref.WeakSet()   # open sessions, trainers

    # ------------------------------------------------------------ creation
    @classmethod
    def load(cls, path: PathLike) -> "Model":
        """Reads a safetensors model file; a malformed file raises FormatError, a
        missing one IoError."""
        h = _capi.c_void_p()
        p = os.fspath(path)
        check(_capi.lib().elastic_model_load(h, encode(p)), p)
        return cls(h, p)

    @classmethod
    def init_random(cls, config: Mapping[str, Any], seed: int = 1) -> "Model":
        """A model with spec section 5 random weights from a seeded generator.
        config: spec section 1 keys (num_items is required), e.g.
        {"num_items": 3706, "hidden": 64}."""
        c = _config_struct(config)
        h = _capi.c_void_p()
        check(_capi.lib().elastic_model_init_random(h, c, int(seed)), "init_random")
        return cls(h)

    def save(self, path: PathLike) -> None:
        """Writes the model file (safetensors, every config key and the extra
        metadata in __metadata__)."""
        p = os.fspath(path)
        check(self._lib.elastic_model_save(self._ptr(), encode(p)), p)

    def close(self) -> None:
        """Frees the model now; sessions and trainers that use it must be closed
        first (ValueError otherwise)."""
        if any(u._is_open() for u in list(getattr(self, "_users", ()))):
            raise ValueError("the model still has open sessions or trainers: close them first")
        h, self._handle = getattr(self, "_handle", None), None
        if h:
            self._lib.elastic_model_free(h)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ptr(self) -> _capi.c_void_p:
        if not self._handle:
            raise ValueError("the model is closed")
        return self._handle

    # ------------------------------------------------------------ config
    @property
    def config(self) -> Dict[str, Any]:
        """The config of spec section 1 as a dict (model, num_items, max_len,
        hidden, heads, layers, experts, ffn, mem_subkeys, mem_key, mem_topk, ln_eps)."""
        return _config_dict(self._lib.elastic_model_config(self._ptr()).contents)

    @property
    def kind(self) -> str:
        """"elastic" or "sasrec"."""
        return str(self.config["model"])

    @property
    def num_items(self) -> int:
        """I: items are numbered 1..I inside the model."""
        return int(self._lib.elastic_model_config(self._ptr()).contents.num_items)

    @property
    def hidden(self) -> int:
        """d: the size of user vectors and item embeddings."""
        return int(self._lib.elastic_model_config(self._ptr()).contents.hidden)

    @property
    def max_len(self) -> int:
        """N: the most recent N items of a history are read."""
        return int(self._lib.elastic_model_config(self._ptr()).contents.max_len)

    @property
    def parameter_count(self) -> int:
        """Number of float parameters (every tensor, flattened)."""
        return int(self._lib.elastic_model_parameter_count(self._ptr()))

    # ------------------------------------------------------------ tensors
    @property
    def tensor_names(self) -> List[str]:
        """Parameter tensor names in the spec's order (spec sections 2 and 7)."""
        h = self._ptr()
        n = self._lib.elastic_model_tensor_count(h)
        return [decode(self._lib.elastic_model_tensor_name(h, i)) or "" for i in range(n)]

    def tensor(self, name: str) -> np.ndarray:
        """A copy of a parameter as a float32 array of its shape."""
        data = _capi.P(_capi.c_float)()
        shape = (_capi.c_int64 * 4)()
        ndim = _capi.c_int()
        check(self._lib.elastic_model_tensor(self._ptr(), encode(name), data, shape, ndim),
              f"tensor {name!r}")
        dims = tuple(int(shape[i]) for i in range(ndim.value))
        count = int(np.prod(dims)) if dims else 1
        if count == 0:
            return np.zeros(dims, dtype=np.float32)
        return np.ctypeslib.as_array(data, shape=(count,)).reshape(dims).copy()

    def tensors(self) -> Dict[str, np.ndarray]:
        """Every parameter (copies), by name, in the spec's order."""
        return {n: self.tensor(n) for n in self.tensor_names}

    def set_tensor(self, name: str, value: Any) -> None:
        """Overwrites a parameter with an array of the same number of elements
        (converted to float32)."""
        arr = np.ascontiguousarray(value, dtype=np.float32).reshape(-1)
        check(self._lib.elastic_model_set_tensor(self._ptr(), encode(name),
                                                 _capi.ptr(arr, _capi.c_float), arr.size),
              f"set_tensor {name!r}")

    # ------------------------------------------------------------ metadata
    @property
    def metadata(self) -> Dict[str, str]:
        """The extra string metadata of the model file (beyond the config keys),
        e.g. "item_ids"."""
        h = self._ptr()
        out = {}
        for i in range(self._lib.elastic_model_metadata_count(h)):
            key = decode(self._lib.elastic_model_metadata_key(h, i)) or ""
            out[key] = decode(self._lib.elastic_model_metadata(h, encode(key))) or ""
        return out

    def set_metadata(self, key: str, value: str) -> None:
        """Sets one extra metadata string (saved with the model)."""
        check(self._lib.elastic_model_set_metadata(self._ptr(), encode(key), encode(value)),
              f"metadata {key!r}")
        if key == "item_ids":
            with self._map_lock:
                self._map, self._map_loaded = None, False

    @property
    def item_ids(self) -> Optional[List[str]]:
        """The item map (original ids of items 1..I, as strings), or None when
        the model has none (then histories and results are model ids 1..I)."""
        m = self._item_map()
        return list(m.names) if m else None

    def set_item_ids(self, ids: Sequence[Any]) -> None:
        """Stores an item map: ids[i] is the original id of model item i+1
        (len(ids) must be num_items; ids are kept as strings)."""
        names = [str(v) for v in ids]
        if len(names) != self.num_items:
            raise OutOfRangeError(f"an item map of {len(names)} ids for {self.num_items} items")
        if len(set(names)) != len(names) or any(not n for n in names):
            raise ValueError("item ids must be distinct and non-empty")
        self.set_metadata("item_ids", json.dumps(names))

    def _item_map(self) -> Optional[_ItemMap]:
        with self._map_lock:
            if not self._map_loaded:
                raw = self._lib.elastic_model_metadata(self._ptr(), b"item_ids")
                self._map = _ItemMap([str(v) for v in json.loads(raw.decode())]) if raw else None
                self._map_loaded = True
            return self._map

    def to_model_ids(self, items: Any) -> np.ndarray:
        """Original item ids -> model ids 1..I (int32) through the item map;
        without a map, the ids themselves (checked to fit int32)."""
        m = self._item_map()
        if m is None:
            return _as_int32(np.asarray(items).reshape(-1))
        return m.to_model(items)

    def from_model_ids(self, ids: Any) -> np.ndarray:
        """Model ids -> original ids (see Session.recommend for the padding value)."""
        m = self._item_map()
        ids = np.asarray(ids)
        return ids if m is None else m.to_original(ids)

    def __repr__(self) -> str:
        if not self._handle:
            return "<libelastic.Model (closed)>"
        c = self.config
        return (f"<libelastic.Model {c['model']} I={c['num_items']} d={c['hidden']} "
                f"L={c['layers']} N={c['max_len']}{' +item map' if self._item_map() else ''}>")


def _as_int32(arr: np.ndarray) -> np.ndarray:
    """An integer array as contiguous int32, refusing values that do not fit."""
    if arr.dtype == np.int32:
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int32)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"item ids must be integers, got an array of {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo < -(1 << 31) or hi >= (1 << 31):
        bad = lo if lo < -(1 << 31) else hi
        raise OutOfRangeError(f"item id {int(bad)} does not fit in int32")
    return np.ascontiguousarray(arr, dtype=np.int32)
