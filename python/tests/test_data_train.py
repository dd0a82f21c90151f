"""test_data_train.py - logs, synthetic data, metrics and training from Python,
against the command line: synth = `elastic synth`, evaluate = `elastic eval`,
train = `elastic train` (the same model file, bit for bit), progress
callbacks, checkpoints, the Trainer's steps.
"""
from __future__ import annotations

import numpy as np
import pytest

import libelastic
from conftest import TINY_TRAIN

SYNTH = dict(users=60, items=40, clusters=4, min_len=5, max_len=12, seed=3)


def _cli_synth(cli, path: str) -> None:
    cli("synth", "--users", "60", "--items", "40", "--clusters", "4", "--min-len", "5",
        "--max-len", "12", "--seed", "3", "-o", path)


def test_read_log_csv(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\nu1,a,3\nu1,b,1\nu2,c,5\nu1,c,2\nu2,a,1\n")
    d = libelastic.read_log(path)
    assert (d.num_users, d.num_items, d.num_events) == (2, 3, 5)
    assert d.user_name(0) == "u1" and d.item_ids == ["a", "b", "c"]
    # u1 in time order: b (1), c (2), a (3) -> ids 2, 3, 1
    assert d.user(0).tolist() == [2, 3, 1] and d.user(0).dtype == np.int32
    hist, target = d.split(0, "test")
    assert hist.tolist() == [2, 3] and target == 1
    items, offsets = d.histories()
    assert offsets.tolist() == [0, 3, 5] and items.dtype == np.int32
    assert d.item_id("c") == 3 and d.item_id("zz") == 0
    with pytest.raises(libelastic.OutOfRangeError):
        d.split(1, "test")                       # 2 events: no test split
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1\n")
    with pytest.raises(libelastic.FormatError, match="bad.csv:2"):
        libelastic.read_log(bad)
    with pytest.raises(libelastic.IoError):
        libelastic.read_log(tmp_path / "none.csv")
    with pytest.raises(libelastic.InvalidArgError):
        libelastic.read_log(path, format="xml")


def test_synth_equals_cli(cli, tmp_path) -> None:
    _cli_synth(cli, str(tmp_path / "cli.txt"))
    libelastic.synth(**SYNTH).save_pairs(tmp_path / "py.txt")
    assert (tmp_path / "cli.txt").read_text() == (tmp_path / "py.txt").read_text()


def test_evaluate_equals_cli(cli, tmp_path, small_model_path: str) -> None:
    data_path = str(tmp_path / "s.txt")
    _cli_synth(cli, data_path)
    model = libelastic.Model.init_random(dict(TINY_TRAIN, num_items=40), seed=2)
    model_path = str(tmp_path / "m.st")
    model.save(model_path)
    out = cli("eval", "--model", model_path, "--data", data_path, "--split", "valid",
              "--max-users", "30")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line[:3] in ("HR@", "NDC", "MRR")}
    data = libelastic.read_log(data_path)
    m = libelastic.evaluate(model, data, split="valid", max_users=30)
    pop = libelastic.evaluate_popularity(data, split="valid", max_users=30)
    assert m["users"] == pop["users"] == 30
    for key, label in (("hr10", "HR@10"), ("hr50", "HR@50"), ("ndcg10", "NDCG@10"),
                       ("ndcg50", "NDCG@50"), ("mrr", "MRR")):
        assert f"{m[key]:.4f}" == rows[label][0], key
        assert f"{pop[key]:.4f}" == rows[label][1], key
    with libelastic.Session(model, backend="cpu") as s:   # a session works as well
        assert libelastic.evaluate(s, data, "valid", 30) == m


def test_rank_of() -> None:
    scores = np.array([0.5, 2.0, 2.0, 1.0, np.nan], dtype=np.float32)
    assert libelastic.rank_of(scores, 3) == 2            # tie with item 2, smaller id first
    assert libelastic.rank_of(scores, 3, exclude=[2]) == 1
    assert libelastic.rank_of(scores, 5) == 5            # NaN last
    assert libelastic.rank_of(scores, 9) == 0


def test_train_equals_cli(cli, tmp_path) -> None:
    data_path = str(tmp_path / "s.txt")
    _cli_synth(cli, data_path)
    keys = [f"{k}={v}" for k, v in TINY_TRAIN.items()]
    cli("train", "--data", data_path, "-o", str(tmp_path / "cli.st"), "--epochs", "2",
        "--seed", "5", "--batch", "64", "--quiet", *keys)
    steps = []
    result = libelastic.train(tmp_path / "py.st", data_path, config=TINY_TRAIN, epochs=2,
                              seed=5, batch=64, progress=steps.append)
    a = libelastic.Model.load(tmp_path / "cli.st")
    b = libelastic.Model.load(tmp_path / "py.st")
    assert a.config == b.config and a.item_ids == b.item_ids and a.item_ids is not None
    for name in a.tensor_names:
        assert np.array_equal(a.tensor(name), b.tensor(name)), name
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert result["test"]["users"] == 60 and 0 <= result["test"]["hr10"] <= 1
    assert set(result["test"]) == {"users", "hr10", "hr50", "ndcg10", "ndcg50", "mrr"}
    assert result["stopped"] == "epochs" and result["data"]["users"] == 60
    assert steps and steps[-1]["examples"] == steps[-1]["examples_total"]
    assert {s["epoch"] for s in steps} == {1, 2}
    ex = [s["examples"] for s in steps if s["epoch"] == 1]
    assert ex == sorted(ex)


@pytest.mark.parametrize("model,objective", [("sasrec", "causal"), ("elastic", "cloze")])
def test_train_objectives_equal_cli(cli, tmp_path, model, objective) -> None:
    """objective= trains what `elastic train --objective` trains, bit for bit
    (cloze: with the mask token the command adds)."""
    data_path = str(tmp_path / "s.txt")
    _cli_synth(cli, data_path)
    config = dict(TINY_TRAIN, model=model)
    keys = [f"{k}={v}" for k, v in config.items()]
    cli("train", "--data", data_path, "-o", str(tmp_path / "cli.st"), "--epochs", "1",
        "--seed", "5", "--objective", objective, "--mask-prob", "0.3", "--quiet", *keys)
    libelastic.train(tmp_path / "py.st", data_path, config=config, epochs=1, seed=5,
                     objective=objective, mask_prob=0.3)
    a = libelastic.Model.load(tmp_path / "cli.st")
    b = libelastic.Model.load(tmp_path / "py.st")
    assert a.config == b.config and b.config["mask_token"] == (objective == "cloze")
    for name in a.tensor_names:
        assert np.array_equal(a.tensor(name), b.tensor(name)), name
    with pytest.raises(libelastic.InvalidArgError, match="objective"):
        libelastic.train(tmp_path / "x.st", data_path, config=config, objective="mlm")


@pytest.mark.parametrize("model,objective", [("sasrec", "causal"), ("elastic", "prefix")])
def test_default_objective_per_model(cli, tmp_path, model, objective) -> None:
    """Without an objective the command and train() use the one measured best
    per model (docs/training.md): causal for SASRec, prefix for ELASTIC."""
    data_path = str(tmp_path / "s.txt")
    _cli_synth(cli, data_path)
    config = dict(TINY_TRAIN, model=model)
    keys = [f"{k}={v}" for k, v in config.items()]
    out = cli("train", "--data", data_path, "-o", str(tmp_path / "cli.st"), "--epochs", "1",
              "--quiet", *keys)
    assert f"objective {objective}\n" in out
    cli("train", "--data", data_path, "-o", str(tmp_path / "explicit.st"), "--epochs", "1",
        "--quiet", "--objective", objective, *keys)
    libelastic.train(tmp_path / "py.st", data_path, config=config, epochs=1)
    a, b, c = (libelastic.Model.load(tmp_path / f) for f in ("cli.st", "explicit.st", "py.st"))
    for name in a.tensor_names:
        assert np.array_equal(a.tensor(name), b.tensor(name)), name
        assert np.array_equal(a.tensor(name), c.tensor(name)), name


def test_train_sampled_softmax_equals_cli(cli, tmp_path) -> None:
    """negatives= and sampler= train what `elastic train --negatives --sampler`
    trains, bit for bit; a resumed run must keep the loss it was trained with."""
    data_path = str(tmp_path / "s.txt")
    _cli_synth(cli, data_path)
    config = dict(TINY_TRAIN, model="sasrec")
    keys = [f"{k}={v}" for k, v in config.items()]
    cli("train", "--data", data_path, "-o", str(tmp_path / "cli.st"), "--epochs", "1",
        "--objective", "causal", "--negatives", "8", "--sampler", "popularity", "--quiet",
        "--checkpoint", *keys)
    libelastic.train(tmp_path / "py.st", data_path, config=config, epochs=1,
                     objective="causal", negatives=8, sampler="popularity")
    a = libelastic.Model.load(tmp_path / "cli.st")
    b = libelastic.Model.load(tmp_path / "py.st")
    for name in a.tensor_names:
        assert np.array_equal(a.tensor(name), b.tensor(name)), name
    with libelastic.Trainer(b, negatives=8, sampler="popularity") as t:
        assert t.negatives == 8
        with pytest.raises(libelastic.InvalidArgError, match="counts"):
            t.step([[1, 2, 3]], [4])
        t.set_item_counts(np.arange(b.num_items))
        assert t.step([[1, 2, 3]], [4]) > 0
    with pytest.raises(libelastic.InvalidArgError, match="sampler"):
        libelastic.Trainer(b, sampler="zipf")
    with pytest.raises(libelastic.InvalidArgError, match="causal, 8 popularity negatives"):
        libelastic.train(tmp_path / "cli.st", data_path, epochs=2, resume=True,
                         objective="causal")


def test_train_checkpoint_resume_and_errors(tmp_path) -> None:
    data = libelastic.synth(**SYNTH)
    out = tmp_path / "m.st"
    r1 = libelastic.train(out, data, config=TINY_TRAIN, epochs=1, checkpoint=True)
    assert (tmp_path / "m.st.ckpt").exists() and (tmp_path / "m.st.ckpt.state").exists()
    r2 = libelastic.train(out, data, epochs=2, resume=True, checkpoint=True)
    assert [e["epoch"] for e in r1["epochs"]] == [1] and [e["epoch"] for e in r2["epochs"]] == [2]
    assert data.num_users == 60                       # a Dataset passed in stays open

    def boom(p):
        raise KeyError("stop here")
    with pytest.raises(KeyError, match="stop here"):
        libelastic.train(tmp_path / "x.st", data, config=TINY_TRAIN, epochs=1, progress=boom)
    with pytest.raises(libelastic.InvalidArgError, match="num_items"):
        libelastic.train(tmp_path / "x.st", data, config={"num_items": 5})
    with pytest.raises(libelastic.FormatError, match="heads"):
        libelastic.train(tmp_path / "x.st", data, config={"hidden": 10, "heads": 3})
    with pytest.raises(libelastic.IoError):
        libelastic.train(tmp_path / "y.st", data, resume=True)


def test_train_tqdm(tmp_path) -> None:
    pytest.importorskip("tqdm")
    r = libelastic.train(tmp_path / "t.st", libelastic.synth(**SYNTH), config=TINY_TRAIN,
                         epochs=1, progress="tqdm")
    assert r["epochs"][0]["loss"] > 0


def test_trainer_steps() -> None:
    model = libelastic.Model.init_random(dict(TINY_TRAIN, num_items=40), seed=1)
    hs = [[1, 2, 3], [4, 5], [6]]
    with libelastic.Trainer(model, lr=1e-2, dropout=0.0, backend="cpu") as tr:
        loss, grad = tr.gradient(hs, [4, 6, 7])
        assert grad.shape == (model.parameter_count,) and grad.dtype == np.float32
        assert loss > 0 and np.abs(grad).max() > 0
        before = model.tensor("item_emb").copy()
        losses = [tr.step(hs, [4, 6, 7]) for _ in range(20)]
        assert losses[-1] < losses[0] and tr.steps == 20
        assert not np.array_equal(before, model.tensor("item_emb"))
        with pytest.raises(libelastic.InvalidArgError):
            tr.step(hs, [1, 2])
        with pytest.raises(libelastic.OutOfRangeError):
            tr.step(hs, [1, 2, 41])
