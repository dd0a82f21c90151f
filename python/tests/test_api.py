"""test_api.py - the Python API of libelastic: models, sessions, recommend /
scores / user vectors with numpy dtypes and shapes, candidates, item maps,
errors, backends and conformance, and agreement with the `elastic` command.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import libelastic
from conftest import SMALL, random_histories


# ------------------------------------------------------------------ basics

def test_version_and_backends() -> None:
    assert libelastic.version().count(".") == 2
    bs = libelastic.backends()
    names = [b["name"] for b in bs]
    assert "cpu" in names
    cpu = bs[names.index("cpu")]
    assert cpu["compiled"] and cpu["available"] and isinstance(cpu["description"], str)
    assert set(cpu) == {"name", "compiled", "available", "device_count", "accelerator",
                        "description"}
    assert os.path.exists(libelastic.library_path())


def test_model_properties(small_model: libelastic.Model) -> None:
    c = small_model.config
    assert c["model"] == "elastic" and c["num_items"] == 100 and c["hidden"] == 32
    assert c["ffn"] == 128 and c["mem_key"] == 32           # derived defaults
    assert set(c) == set(libelastic.CONFIG_KEYS)
    assert small_model.num_items == 100 and small_model.hidden == 32
    assert small_model.max_len == 50 and small_model.kind == "elastic"
    assert small_model.item_ids is None
    names = small_model.tensor_names
    assert names[0] == "item_emb" and "imr.subkeys" in names
    emb = small_model.tensor("item_emb")
    assert emb.dtype == np.float32 and emb.shape == (101, 32)
    assert small_model.parameter_count == sum(t.size for t in small_model.tensors().values())


def test_init_random_is_seeded(tmp_path) -> None:
    a = libelastic.Model.init_random(SMALL, seed=5)
    b = libelastic.Model.init_random(SMALL, seed=5)
    c = libelastic.Model.init_random(SMALL, seed=6)
    assert np.array_equal(a.tensor("item_emb"), b.tensor("item_emb"))
    assert not np.array_equal(a.tensor("item_emb"), c.tensor("item_emb"))
    sas = libelastic.Model.init_random({"model": "sasrec", "num_items": 20, "hidden": 16}, 1)
    assert sas.kind == "sasrec" and "imr.subkeys" not in sas.tensor_names


def test_save_load_round_trip(tmp_path, small_model: libelastic.Model) -> None:
    small_model.set_metadata("note", "hello")
    w = small_model.tensor("pos_emb") * 2
    small_model.set_tensor("pos_emb", w)
    path = str(tmp_path / "m.st")
    small_model.save(path)
    back = libelastic.Model.load(path)
    assert back.config == small_model.config
    assert back.metadata["note"] == "hello"
    for name in small_model.tensor_names:
        assert np.array_equal(back.tensor(name), small_model.tensor(name)), name
    assert np.array_equal(back.tensor("pos_emb"), w)


def test_validate_config() -> None:
    c = libelastic.validate_config({"num_items": 10, "hidden": 24})
    assert c["ffn"] == 96 and c["mem_key"] == 24
    with pytest.raises(libelastic.FormatError, match="heads"):
        libelastic.validate_config({"num_items": 10, "hidden": 10, "heads": 3})
    with pytest.raises(libelastic.ElasticError):
        libelastic.validate_config({"num_items": 10, "no_such_key": 1})


# ------------------------------------------------------------------ sessions

def test_session_context_and_describe(small_model: libelastic.Model) -> None:
    with libelastic.Session(small_model, backend="cpu", threads=1) as s:
        d = s.describe()
        assert d["backend"].startswith("cpu") and d["requested"]["threads"] == 1
        assert d["model"]["num_items"] == 100
        s.recommend([[1, 2, 3]])
        assert s.last_stats()["nodes"] > 0
        plan = s.plan(4, 20)
        assert "plan:" in plan and "gather" in plan
    with pytest.raises(ValueError, match="closed"):
        s.recommend([[1]])
    s.close()  # idempotent
    m = libelastic.Model.init_random(SMALL, seed=1)
    s2 = libelastic.Session(m, backend="cpu")
    with pytest.raises(ValueError, match="open sessions"):
        m.close()                                 # a session still uses it
    s2.close()
    m.close()
    with pytest.raises(ValueError, match="closed"):
        libelastic.Session(m)


def test_recommend_shapes_and_dtypes(session: libelastic.Session) -> None:
    hs = random_histories(100, 7, seed=1)
    ids, sc = session.recommend(hs, k=5)
    assert ids.shape == (7, 5) and sc.shape == (7, 5)
    assert ids.dtype == np.int32 and sc.dtype == np.float32
    assert np.all(sc[:, :-1] >= sc[:, 1:])
    for b, h in enumerate(hs):                                   # history left out
        assert not set(ids[b].tolist()) & set(h)
    uv = session.user_vectors(hs)
    assert uv.shape == (7, 32) and uv.dtype == np.float32
    s = session.scores(hs)
    assert s.shape == (7, 100) and s.dtype == np.float32
    emb = session.model.tensor("item_emb")[1:]
    np.testing.assert_allclose(s, uv @ emb.T, rtol=1e-4, atol=1e-5)
    # the top-k equals the score rows' ranking
    for b, h in enumerate(hs):
        row = s[b].copy()
        row[np.array(h) - 1] = -np.inf
        assert np.array_equal(ids[b], np.argsort(-row, kind="stable")[:5] + 1)
    empty_ids, empty_sc = session.recommend([], k=3)
    assert empty_ids.shape == (0, 3) and empty_sc.shape == (0, 3)


def test_history_forms_agree(session: libelastic.Session) -> None:
    hs = random_histories(100, 9, seed=2)
    want = session.recommend(hs, k=6)
    flat = np.concatenate([np.array(h) for h in hs])
    offs = np.concatenate([[0], np.cumsum([len(h) for h in hs])])
    forms = [
        [np.array(h, dtype=np.int64) for h in hs],
        [tuple(h) for h in hs],
        (flat.astype(np.int32), offs.astype(np.int64)),
        (flat.astype(np.int64), offs.astype(np.int32)),
        (flat.astype(np.uint16), offs.astype(np.int64)),
    ]
    for form in forms:
        got = session.recommend(form, k=6)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    # a 2-D array is B histories of equal length
    arr = np.arange(1, 41).reshape(4, 10)
    a = session.recommend(arr, k=3)
    b = session.recommend(arr.tolist(), k=3)
    assert np.array_equal(a[0], b[0])


def test_exclude_history_flag(session: libelastic.Session) -> None:
    h = [[5, 6, 7]]
    s = session.scores(h)[0]
    ids, _ = session.recommend(h, k=100, exclude_history=False)
    assert ids.shape == (1, 100) and sorted(ids[0].tolist()) == list(range(1, 101))
    assert np.array_equal(ids[0], np.argsort(-s, kind="stable") + 1)
    ids, sc = session.recommend(h, k=100, exclude_history=True)
    assert ids[0, -3:].tolist() == [0, 0, 0] and np.all(np.isneginf(sc[0, -3:]))


def test_candidates(session: libelastic.Session) -> None:
    hs = random_histories(100, 5, seed=3)
    all_items = np.arange(1, 101)
    full = session.recommend(hs, k=10)
    got = session.recommend(hs, k=10, candidates=all_items)
    assert np.array_equal(got[0], full[0]) and np.array_equal(got[1], full[1])
    scores = session.scores(hs)
    cand = [int(v) for v in np.random.default_rng(4).choice(all_items, 30, replace=False)]
    per_user = [cand[b:b + 12] for b in range(5)]
    for form, rows in ((cand, [cand] * 5), (per_user, per_user),
                       (np.array([c[:10] for c in per_user]), [c[:10] for c in per_user])):
        ids, sc = session.recommend(hs, k=8, candidates=form)
        for b, h in enumerate(hs):
            pool = sorted(set(rows[b]) - set(h))
            order = sorted(pool, key=lambda v: (-scores[b, v - 1], v))[:8]
            assert ids[b, :len(order)].tolist() == order
            assert np.all(ids[b, len(order):] == 0) and np.all(np.isneginf(sc[b, len(order):]))
            assert np.array_equal(sc[b, :len(order)], scores[b, np.array(order) - 1])
    with pytest.raises(libelastic.OutOfRangeError):
        session.recommend(hs, candidates=[1, 2, 101])
    with pytest.raises(libelastic.InvalidArgError):
        session.recommend(hs, candidates=[[1, 2]] * 4)
    for cand in (None, all_items):                     # K > I: refused on both paths
        with pytest.raises(libelastic.OutOfRangeError, match="top_k"):
            session.recommend(hs, k=101, candidates=cand)


def test_ties_by_smaller_id(tmp_path) -> None:
    """Equal scores (copied embeddings) come out by the smaller id, in the library's
    top-K and in the candidate path alike."""
    m = libelastic.Model.init_random(SMALL, seed=9)
    emb = m.tensor("item_emb")
    for v in (9, 30, 77):
        emb[v] = emb[2]
    m.set_tensor("item_emb", emb)
    with libelastic.Session(m, backend="cpu") as s:
        h = [[1, 50]]
        sc = s.scores(h)[0]
        assert sc[1] == sc[8] == sc[29] == sc[76]
        ids, _ = s.recommend(h, k=100)
        pos = [ids[0].tolist().index(v) for v in (2, 9, 30, 77)]
        assert pos == sorted(pos) and pos[-1] - pos[0] == 3
        cids, _ = s.recommend(h, k=100, candidates=np.arange(100, 0, -1))
        assert np.array_equal(cids, ids)


# ------------------------------------------------------------------ item maps

def test_item_map_strings(tmp_path, small_model: libelastic.Model) -> None:
    names = [f"film-{v * 7}" for v in range(1, 101)]
    small_model.set_item_ids(names)
    path = str(tmp_path / "named.st")
    small_model.save(path)
    m = libelastic.Model.load(path)
    assert m.item_ids == names
    hs_model = random_histories(100, 6, seed=5)
    hs_named = [[names[v - 1] for v in h] for h in hs_model]
    with libelastic.Session(m, backend="cpu") as s:
        ids, sc = s.recommend(hs_named, k=5)
        raw, raw_sc = s.recommend(hs_model, k=5, use_item_map=False)
        assert ids.dtype.kind == "U" and ids.shape == (6, 5)
        assert ids.tolist() == [[names[v - 1] for v in row] for row in raw]
        assert np.array_equal(sc, raw_sc)
        np.testing.assert_array_equal(s.user_vectors(hs_named),
                                      s.user_vectors(hs_model, use_item_map=False))
        cids, _ = s.recommend(hs_named, k=3, candidates=names[:20])
        assert set(cids.ravel()) - {""} <= set(names[:20])
        with pytest.raises(libelastic.OutOfRangeError, match="film-3"):
            s.recommend([["film-7", "film-3"]])
        # padding in a named map is ''
        pad, _ = s.recommend([names[:98]], k=5)
        assert pad[0, 2:].tolist() == ["", "", ""]


def test_item_map_numbers(tmp_path, small_model: libelastic.Model) -> None:
    ids_map = [1000 + 3 * v for v in range(100)]
    small_model.set_item_ids(ids_map)
    m = small_model
    assert m.item_ids == [str(v) for v in ids_map]
    hs = [[1000, 1003, 1297], [1297]]
    with libelastic.Session(m, backend="cpu") as s:
        ids, _ = s.recommend(hs, k=4)
        raw, _ = s.recommend([[1, 2, 100], [100]], k=4, use_item_map=False)
        assert ids.dtype == np.int64
        assert np.array_equal(ids, np.array(ids_map)[raw - 1])
        csr = (np.array([1000, 1003, 1297, 1297]), np.array([0, 3, 4]))
        assert np.array_equal(s.recommend(csr, k=4)[0], ids)
        pad, _ = s.recommend([ids_map[:99]], k=3)
        assert pad[0, 1:].tolist() == [-1, -1]
        with pytest.raises(libelastic.OutOfRangeError):
            s.recommend([[1001]])
    assert np.array_equal(m.to_model_ids([1000, 1297]), [1, 100])


# ------------------------------------------------------------------ errors

def test_errors_carry_status_and_message(tmp_path, session: libelastic.Session) -> None:
    with pytest.raises(libelastic.OutOfRangeError) as e:
        session.recommend([[1, 2, 101]])
    assert e.value.status == 2 and e.value.status_name == "ELASTIC_ERR_OUT_OF_RANGE"
    assert "101" in e.value.message and isinstance(e.value, ValueError)
    with pytest.raises(libelastic.EmptyHistoryError, match="empty history"):
        session.recommend([[1], []])
    with pytest.raises(libelastic.OutOfRangeError):
        session.user_vectors([[0]])
    with pytest.raises(libelastic.InvalidArgError):
        session.recommend([[1]], k=0)
    with pytest.raises(TypeError):
        session.recommend([[1.5, 2.0]])
    with pytest.raises(TypeError):
        session.recommend(np.array([[1.0, 2.0]]))
    with pytest.raises(libelastic.OutOfRangeError, match="int32"):
        session.recommend([[1, 2 ** 40]])
    # the session still works after errors
    assert session.recommend([[1, 2]])[0].shape == (1, 10)
    bad = tmp_path / "bad.st"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(libelastic.FormatError) as e:
        libelastic.Model.load(bad)
    assert str(bad) in str(e.value) and e.value.status == 5
    with pytest.raises(libelastic.IoError) as e:
        libelastic.Model.load(tmp_path / "missing.st")
    assert isinstance(e.value, OSError) and "missing.st" in str(e.value)
    with pytest.raises(libelastic.BackendError):
        libelastic.Session(session.model, backend="nosuch")
    with pytest.raises(libelastic.InvalidArgError, match="cpu.nosuch"):
        libelastic.Session(session.model, backend="cpu", backend_options="cpu.nosuch=1")
    with pytest.raises(libelastic.InvalidArgError):
        libelastic.Session(session.model, attention="sparse")
    assert issubclass(libelastic.NoMemoryError, MemoryError)
    for cls in (libelastic.UnsupportedError, libelastic.ShapeError, libelastic.InternalError):
        assert issubclass(cls, libelastic.ElasticError)


# ------------------------------------------------------------------ conformance

def test_conformance_report() -> None:
    r = libelastic.conformance(backends=["cpu"], ops="linear,layer_norm", whole_model=False)
    assert r["failures"] == 0
    assert {o["op"] for o in r["ops"]} == {"linear", "layer_norm"}
    assert all(c["pass"] for c in r["cases"]) and "passed" in r["text"]
    with pytest.raises(libelastic.ElasticError):
        libelastic.conformance(backends=["cpu"], ops="no_such_op")


# ------------------------------------------------------------------ the command line

def test_recommend_equals_cli(cli, small_model_path: str, tmp_path) -> None:
    hs = random_histories(100, 40, seed=11)
    text = "\n".join(" ".join(map(str, h)) for h in hs) + "\n"
    out = cli("recommend", "--model", small_model_path, "--top", "7", "--backend", "cpu",
              input=text)
    m = libelastic.Model.load(small_model_path)
    with libelastic.Session(m, backend="cpu") as s:
        ids, sc = s.recommend(hs, k=7)
    for b, line in enumerate(out.splitlines()):
        no, _, cells = line.partition("\t")
        assert int(no) == b + 1
        want = [c.split(":") for c in cells.split()]
        assert [int(i) for i, _ in want] == ids[b].tolist()
        assert [s_ for _, s_ in want] == [f"{v:.6g}" for v in sc[b]]


def test_plan_equals_cli(cli, small_model_path: str) -> None:
    out = cli("plan", "--model", small_model_path, "--batch", "3", "--len", "12",
              "--backend", "cpu")
    with libelastic.Session(libelastic.Model.load(small_model_path), backend="cpu") as s:
        plan = s.plan(3, 12)
    assert plan.splitlines()[0] in out
