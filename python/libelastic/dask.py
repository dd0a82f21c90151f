"""dask.py - scale-out scoring on Dask (dask.distributed): an interaction log as a
Dask dataframe (user, item, timestamp) in, a Dask dataframe of top-K
recommendations (user, rank, item, score) out.

    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster
    import libelastic.dask as led
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # or Client("tcp://host:8786")
    log = dd.read_parquet("log.parquet")            # or dd.read_csv("log.csv")
    recs = led.recommend(log, "model.st", k=10)
    recs.to_parquet("recs.parquet")

The work is three steps, each usable alone: group_histories (shuffle the events
so that every user's events sit in one partition, ordered by time, ties in the
log's order), score (per partition: histories -> top-K through a Session), and
the caller's write.  The per-partition function, recommend_partition, is
plain pandas in / pandas out, so other engines can call it (Spark:
recommend_batches with mapInPandas, see docs/python.md).

A worker process loads the model once (the first partition it scores) and
keeps it; each worker thread opens its own Session on it.  With an item map in
the model, the log's items are the data's own ids (matched as text) and so are
the output's.  Without one they must be model ids 1..I.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import pandas as pd

from .errors import InvalidArgError, OutOfRangeError
from .model import Model
from .session import Session

#: The sequence column group_histories adds (the log's order, for ties in time).
SEQ = "_libelastic_seq"

# ------------------------------------------------------------ per-process model cache

_models: Dict[Tuple[str, float], Model] = {}
_models_lock = threading.Lock()
_local = threading.local()
_loads = 0


_stats = {"partitions": 0, "users": 0, "wall_s": 0.0, "cpu_s": 0.0}
_stats_lock = threading.Lock()


def load_count() -> int:
    """How many times this process has loaded a model file for scoring (a worker
    scoring many partitions with one model reports 1)."""
    return _loads


def worker_stats() -> Dict[str, Any]:
    """This process's scoring so far: model loads, partitions, users, and the wall
    and CPU seconds of the calling threads inside recommend_partition (CPU well
    below wall means the process waited for a core)."""
    with _stats_lock:
        return dict(_stats, model_loads=_loads)


def _model(path: str) -> Model:
    """The model of `path`, loaded once per process (reloaded if the file changed)."""
    global _loads
    key = (os.path.realpath(path), os.path.getmtime(path))
    with _models_lock:
        m = _models.get(key)
        if m is None:
            m = Model.load(path)
            _models[key] = m
            _loads += 1
        return m


def _session(path: str, backend: str, threads: Optional[int],
             backend_options: Optional[str]) -> Session:
    """This thread's session on the process's model (one per thread and settings)."""
    model = _model(path)
    cache = getattr(_local, "sessions", None)
    if cache is None:
        cache = _local.sessions = {}
    key = (id(model), backend, threads, backend_options)
    s = cache.get(key)
    if s is None:
        s = cache[key] = Session(model, backend=backend, threads=threads,
                                 backend_options=backend_options)
    return s


# ------------------------------------------------------------ per partition

def _output_meta(user_dtype: Any, model: Model) -> pd.DataFrame:
    m = model._item_map()
    # named items: pandas' own dtype for a column of strings ("str" in pandas 3, object before)
    item_dtype = np.int64 if (m is None or m.numeric) else pd.Series(["x"]).dtype
    return pd.DataFrame({"user": pd.Series([], dtype=user_dtype),
                         "rank": pd.Series([], dtype=np.int32),
                         "item": pd.Series([], dtype=item_dtype),
                         "score": pd.Series([], dtype=np.float32)})


def recommend_partition(events: pd.DataFrame, model_path: str, k: int = 10,
                        user: str = "user", item: str = "item",
                        timestamp: Optional[str] = "timestamp", exclude_history: bool = True,
                        batch_size: int = 256, backend: str = "cpu", threads: Optional[int] = 1,
                        backend_options: Optional[str] = None, unknown_items: str = "error",
                        presorted: bool = False) -> pd.DataFrame:
    """Top-k recommendations for every user of a pandas DataFrame that holds all of
    those users' events: columns user, rank (1..k), item, score.

    Events are ordered per user by timestamp (None: the frame's row order),
    ties by the SEQ column when present, else by row order.  unknown_items:
    "error" (an item the model does not know raises OutOfRangeError) or "drop"
    (such events are left out; a user left with none gets no rows).  Rows of
    padding (fewer than k items left) are not returned.  presorted: the frame
    is already ordered by (user, time)."""
    if unknown_items not in ("error", "drop"):
        raise InvalidArgError("unknown_items must be 'error' or 'drop'")
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    out = _recommend_partition(events, model_path, k, user, item, timestamp, exclude_history,
                               batch_size, backend, threads, backend_options, unknown_items,
                               presorted)
    with _stats_lock:
        _stats["partitions"] += 1
        _stats["users"] += int(out["user"].nunique()) if len(out) else 0
        _stats["wall_s"] += time.perf_counter() - wall0
        _stats["cpu_s"] += time.thread_time() - cpu0
    return out


def _recommend_partition(events: pd.DataFrame, model_path: str, k: int, user: str, item: str,
                         timestamp: Optional[str], exclude_history: bool, batch_size: int,
                         backend: str, threads: Optional[int], backend_options: Optional[str],
                         unknown_items: str, presorted: bool) -> pd.DataFrame:
    session = _session(model_path, backend, threads, backend_options)
    model = session.model
    if len(events) == 0:
        return _output_meta(events[user].dtype if user in events else object, model)
    if not presorted:
        keys = [user] + ([timestamp] if timestamp else []) + ([SEQ] if SEQ in events else [])
        events = events.sort_values(keys, kind="mergesort")
    users = events[user].to_numpy()
    raw = events[item].to_numpy()
    imap = model._item_map()
    if imap is None:
        if raw.dtype.kind not in "iu":
            raise InvalidArgError(f"column {item!r} holds {raw.dtype}: the model has no item "
                                  "map, so items must be integer model ids")
        ids = raw.astype(np.int64)
        known = (ids >= 1) & (ids <= model.num_items)
        ids = np.where(known, ids, 0).astype(np.int32)
    else:
        ids = imap.to_model_lenient(raw)
        known = ids > 0
    if not known.all():
        if unknown_items == "error":
            bad = raw[np.flatnonzero(~known)[0]]
            raise OutOfRangeError(f"item {bad!r} (user {users[np.flatnonzero(~known)[0]]!r}) is "
                                  "not in the model" + (" item map" if imap else ""))
        users, ids = users[known], ids[known]
        if users.size == 0:
            return _output_meta(events[user].dtype, model)
    # user boundaries (rows are grouped by user)
    change = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    offsets = np.concatenate([starts, [users.size]]).astype(np.int64)
    B = starts.size
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    out_ids = np.empty((B, k), dtype=np.int32)
    out_sc = np.empty((B, k), dtype=np.float32)
    for first in range(0, B, batch_size):
        last = min(B, first + batch_size)
        lo, hi = offsets[first], offsets[last]
        got_ids, got_sc = session.recommend((ids[lo:hi], offsets[first:last + 1] - lo), k,
                                            exclude_history, use_item_map=False)
        out_ids[first:last], out_sc[first:last] = got_ids, got_sc
    real = out_ids > 0
    rows_user = np.repeat(users[starts], k).reshape(B, k)[real]
    ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), (B, k))[real]
    if imap is None:
        items_out = out_ids[real].astype(np.int64)
    elif imap.numeric:
        items_out = model.from_model_ids(out_ids[real])
    else:      # strings, in pandas' dtype for them, as _output_meta says
        items_out = model.from_model_ids(out_ids[real])
    return pd.DataFrame({"user": rows_user, "rank": ranks, "item": pd.Series(items_out),
                         "score": out_sc[real]})


def recommend_batches(batches: Iterable[pd.DataFrame], model_path: str, k: int = 10,
                      **options: Any) -> Iterator[pd.DataFrame]:
    """recommend_partition over a whole partition given as an iterator of pandas
    batches (Spark's mapInPandas hands one partition to one call as such an
    iterator): the batches are joined, then scored in one go.  Every user's
    events must be in this partition (repartition by user first)."""
    frames = list(batches)
    if frames:
        yield recommend_partition(pd.concat(frames, ignore_index=True), model_path, k, **options)


# ------------------------------------------------------------ Dask

def _add_seq(df: pd.DataFrame, partition_info: Optional[Dict[str, Any]] = None) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    return df.assign(**{SEQ: (np.int64(number) << np.int64(40)) +
                        np.arange(len(df), dtype=np.int64)})


def _sort_partition(df: pd.DataFrame, keys: Tuple[str, ...]) -> pd.DataFrame:
    return df.sort_values(list(keys), kind="mergesort")


def group_histories(log: Any, user: str = "user", item: str = "item",
                    timestamp: Optional[str] = "timestamp",
                    npartitions: Optional[int] = None) -> Any:
    """The log shuffled so that each user's events sit in one partition, sorted by
    (user, timestamp, log order): a Dask dataframe with the columns user, item,
    timestamp (when given) and SEQ.  npartitions: of the result (default: the
    log's)."""
    cols = [user, item] + ([timestamp] if timestamp else [])
    missing = [c for c in cols if c not in log.columns]
    if missing:
        raise InvalidArgError(f"the log lacks the column(s) {missing}; it has "
                              f"{list(log.columns)}")
    log = log[cols]
    meta = log._meta.assign(**{SEQ: np.array([], dtype=np.int64)})
    seq = log.map_partitions(_add_seq, meta=meta)
    shuffled = seq.shuffle(on=user, npartitions=npartitions or log.npartitions,
                           ignore_index=True)
    keys = tuple([user] + ([timestamp] if timestamp else []) + [SEQ])
    return shuffled.map_partitions(_sort_partition, keys, meta=meta)


def score(grouped: Any, model_path: str, k: int = 10, user: str = "user",
          item: str = "item", timestamp: Optional[str] = "timestamp",
          exclude_history: bool = True, batch_size: int = 256, backend: str = "cpu",
          threads: Optional[int] = 1, backend_options: Optional[str] = None,
          unknown_items: str = "error") -> Any:
    """Scores a dataframe from group_histories: a Dask dataframe (user, rank, item,
    score).  threads: CPU threads per session (1: one core per worker thread)."""
    with Model.load(model_path) as m:          # the output's dtypes, on the client
        meta = _output_meta(grouped._meta[user].dtype, m)
    return grouped.map_partitions(
        recommend_partition, model_path, k, user=user, item=item, timestamp=timestamp,
        exclude_history=exclude_history, batch_size=batch_size, backend=backend,
        threads=threads, backend_options=backend_options, unknown_items=unknown_items,
        presorted=True, meta=meta)


def recommend(log: Any, model_path: str, k: int = 10, user: str = "user", item: str = "item",
              timestamp: Optional[str] = "timestamp", exclude_history: bool = True,
              batch_size: int = 256, backend: str = "cpu", threads: Optional[int] = 1,
              backend_options: Optional[str] = None, unknown_items: str = "error",
              npartitions: Optional[int] = None) -> Any:
    """Top-k recommendations for every user of an interaction log (a Dask
    dataframe with columns user, item and timestamp; timestamp=None: the log's
    order is the time order): a Dask dataframe (user, rank, item, score),
    ready for to_parquet.  See group_histories and score for the options."""
    grouped = group_histories(log, user, item, timestamp, npartitions)
    return score(grouped, model_path, k, user, item, timestamp, exclude_history, batch_size,
                 backend, threads, backend_options, unknown_items)


def read_log(path: str, **kwargs: Any) -> Any:
    """A log as a Dask dataframe, with Dask's own readers: Parquet for a .parquet
    path or folder, CSV otherwise (kwargs go to the reader)."""
    import dask.dataframe as dd
    p = os.fspath(path)
    if p.endswith(".parquet") or p.endswith(".pq") or \
            (os.path.isdir(p) and any(n.endswith(".parquet") for n in os.listdir(p))):
        return dd.read_parquet(p, **kwargs)
    return dd.read_csv(p, **kwargs)
