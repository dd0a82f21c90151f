"""test_dask.py - libelastic.dask: a synthetic log of 20,000 users (`elastic synth`),
its rows shuffled and timestamps with ties, read by Dask from CSV, grouped and
scored on a LocalCluster of 2 worker processes, equals `elastic recommend` on the
same users (ids, and scores as the command prints them) and a single Session
(scores bit for bit); each worker loads the model once.  The per-partition
function alone: unknown items, string item maps, Spark-style batches.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

import libelastic  # noqa: E402
import libelastic.dask as led  # noqa: E402

USERS = 20_000
MODEL = {"num_items": 1000, "hidden": 32, "max_len": 50, "experts": 4, "mem_subkeys": 16,
         "layers": 1}


def _log_frame(seed: int = 7) -> "pd.DataFrame":
    """The synthetic log as (user, item, timestamp), rows shuffled; timestamps are
    event positions halved, so pairs of events tie and the log order decides."""
    data = libelastic.synth(users=USERS, items=1000, clusters=20, min_len=5, max_len=20,
                            seed=seed)
    items, offsets = data.histories()
    lengths = np.diff(offsets)
    users = np.repeat(np.arange(1, USERS + 1, dtype=np.int64), lengths)
    pos = np.arange(items.size) - np.repeat(offsets[:-1], lengths)
    names = np.array([int(data.item_name(v)) for v in range(1, data.num_items + 1)])
    frame = pd.DataFrame({"user": users, "item": names[items - 1],
                          "timestamp": (pos // 2).astype(np.int64)})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def mapped_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model whose item map is a permutation of the synthetic item ids."""
    path = str(tmp_path_factory.mktemp("dask") / "model.st")
    m = libelastic.Model.init_random(MODEL, seed=4)
    m.set_item_ids(np.random.default_rng(5).permutation(np.arange(1, 1001)).tolist())
    m.save(path)
    return path


def _expected_histories(frame: "pd.DataFrame"):
    """Per user, items by (timestamp, log order): the documented order."""
    ordered = frame.sort_values(["user", "timestamp"], kind="mergesort")
    users = ordered["user"].to_numpy()
    cut = np.flatnonzero(users[1:] != users[:-1]) + 1
    return users[np.concatenate([[0], cut])], np.split(ordered["item"].to_numpy(), cut)


def test_dask_local_cluster_equals_cli(cli, mapped_model: str, tmp_path) -> None:
    frame = _log_frame()
    csv = str(tmp_path / "log.csv")
    frame.to_csv(csv, index=False)
    log = dd.read_csv(csv, blocksize=500_000)       # several partitions
    assert log.npartitions >= 3
    k = 10
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        recs = led.recommend(log, mapped_model, k=k, npartitions=4)
        out_dir = str(tmp_path / "recs.parquet")
        recs.to_parquet(out_dir)
        loads = client.run(led.load_count)
    assert sorted(loads.values()) == [1, 1], loads            # once per worker process
    got = pd.read_parquet(out_dir).sort_values(["user", "rank"]).reset_index(drop=True)
    assert list(got.columns) == ["user", "rank", "item", "score"]
    assert got["score"].dtype == np.float32 and got["item"].dtype == np.int64
    assert got["user"].nunique() == USERS and len(got) == USERS * k

    users, hists = _expected_histories(frame)
    # the command line on the same users, in the data's ids through the model's map
    text = "\n".join(" ".join(map(str, h)) for h in hists) + "\n"
    lines = cli("recommend", "--model", mapped_model, "--top", str(k), "--backend", "cpu",
                "--threads", "1", input=text).splitlines()
    assert len(lines) == USERS
    want_ids = np.array([[int(c.split(":")[0]) for c in line.split("\t")[1].split()]
                         for line in lines])
    want_sc = [[c.split(":")[1] for c in line.split("\t")[1].split()] for line in lines]
    assert np.array_equal(got["user"].to_numpy().reshape(USERS, k)[:, 0], users)
    assert np.array_equal(got["item"].to_numpy().reshape(USERS, k), want_ids)
    printed = [[f"{v:.6g}" for v in row] for row in got["score"].to_numpy().reshape(USERS, k)]
    assert printed == want_sc
    # and bit for bit against one Session in this process
    with libelastic.Session(libelastic.Model.load(mapped_model), backend="cpu", threads=1) as s:
        ids, sc = s.recommend(hists[:2000], k=k)
    assert np.array_equal(got["item"].to_numpy().reshape(USERS, k)[:2000], ids)
    assert np.array_equal(got["score"].to_numpy().reshape(USERS, k)[:2000], sc)


def test_partition_function(mapped_model: str) -> None:
    """recommend_partition alone; Spark-style batches; unknown items."""
    frame = _log_frame()
    frame = frame[frame["user"] <= 300]
    whole = led.recommend_partition(frame, mapped_model, k=5)
    assert whole["user"].nunique() == 300 and set(whole["rank"]) == {1, 2, 3, 4, 5}
    chunks = [frame.iloc[i:i + 700] for i in range(0, len(frame), 700)]
    joined = pd.concat(list(led.recommend_batches(iter(chunks), mapped_model, k=5)))
    pd.testing.assert_frame_equal(joined.reset_index(drop=True), whole.reset_index(drop=True))
    bad = pd.concat([frame, pd.DataFrame({"user": [1], "item": [99999], "timestamp": [0]})])
    with pytest.raises(libelastic.OutOfRangeError, match="99999"):
        led.recommend_partition(bad, mapped_model, k=5)
    dropped = led.recommend_partition(bad, mapped_model, k=5, unknown_items="drop")
    pd.testing.assert_frame_equal(dropped.reset_index(drop=True), whole.reset_index(drop=True))
    only_bad = pd.DataFrame({"user": [7], "item": [99999], "timestamp": [0]})
    assert len(led.recommend_partition(only_bad, mapped_model, unknown_items="drop")) == 0


def test_partition_string_items(tmp_path) -> None:
    """A model with named items: names in, names out; no map: model ids."""
    m = libelastic.Model.init_random(dict(MODEL, num_items=50), seed=2)
    m.set_item_ids([f"sku-{v}" for v in range(50)])
    path = str(tmp_path / "named.st")
    m.save(path)
    frame = pd.DataFrame({"user": ["a", "a", "b", "a"], "item": ["sku-3", "sku-9", "sku-1",
                                                                 "sku-4"],
                          "timestamp": [1, 2, 1, 0]})
    out = led.recommend_partition(frame, path, k=3)
    with libelastic.Session(libelastic.Model.load(path), backend="cpu") as s:
        ids, sc = s.recommend([["sku-4", "sku-3", "sku-9"], ["sku-1"]], k=3)
    assert out["item"].tolist() == ids.ravel().tolist()
    assert out["user"].tolist() == ["a"] * 3 + ["b"] * 3
    np.testing.assert_array_equal(out["score"].to_numpy(), sc.ravel())
    # through Dask (threads), written to Parquet and read back
    recs = led.recommend(dd.from_pandas(frame, npartitions=2), path, k=3)
    assert recs.dtypes["rank"] == np.int32 and recs.dtypes["item"] != np.int64
    got = recs.compute(scheduler="threads")
    assert got["item"].dtype == pd.Series(["x"]).dtype and got["score"].dtype == np.float32
    recs.to_parquet(str(tmp_path / "named.parquet"))
    back = pd.read_parquet(str(tmp_path / "named.parquet")).sort_values(["user", "rank"])
    assert back["item"].tolist() == ids.ravel().tolist()
    plain = str(tmp_path / "plain.st")
    libelastic.Model.init_random(dict(MODEL, num_items=50), seed=2).save(plain)
    with pytest.raises(libelastic.InvalidArgError, match="item map"):
        led.recommend_partition(frame, plain)


def test_dask_without_timestamp(mapped_model: str) -> None:
    """timestamp=None: the log's order is the time order (threaded scheduler)."""
    frame = pd.DataFrame({"user": [2, 1, 2, 1, 1], "item": [5, 6, 7, 8, 9]})
    log = dd.from_pandas(frame, npartitions=2)
    out = led.recommend(log, mapped_model, k=4, timestamp=None).compute(scheduler="threads")
    with libelastic.Session(libelastic.Model.load(mapped_model), backend="cpu") as s:
        ids, _ = s.recommend([[6, 8, 9], [5, 7]], k=4)
    out = out.sort_values(["user", "rank"])
    assert out["item"].to_numpy().reshape(2, 4).tolist() == ids.tolist()
    assert os.path.exists(mapped_model)
