"""test_torch_fast.py - libelastic.torch_fast (the fast PyTorch port, the peer of
tools/bench/peers.py): its user vectors against the C library's (the CPU
backend) within the whole-model conformance tolerance (relative L2 per user
< 1e-5, docs/spec/conformance.md), ELASTIC and SASRec, with and without the
mask token, histories longer than max_len included; the same top-10 lists; its
position loss (spec 5, causal / cloze) against the C trainer's on one batch;
and the ONNX export against eager when onnxruntime is installed.  Skipped
without torch (CI does not install it).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import libelastic  # noqa: E402
import libelastic.torch as et  # noqa: E402
from libelastic.torch_fast import FastModel  # noqa: E402

I = 200
BASE = {"num_items": I, "hidden": 32, "max_len": 48, "experts": 4, "mem_subkeys": 16,
        "mem_topk": 4, "layers": 2}
CONFIGS = [dict(BASE), dict(BASE, mask_token=1), dict(BASE, model="sasrec"),
           dict(BASE, model="sasrec", mask_token=1)]
IDS = ["elastic", "elastic-mask", "sasrec", "sasrec-mask"]


def _histories(seed: int, count: int = 23):
    rng = np.random.default_rng(seed)
    lens = list(rng.integers(1, 70, count)) + [1, 47, 48, 49]  # around max_len (48)
    return [[int(v) for v in rng.integers(1, I + 1, n)] for n in lens]


def _rel(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_fast_matches_library(config) -> None:
    m = libelastic.Model.init_random(config, seed=21)
    fast = et.to_torch(m, fast=True).eval()
    assert isinstance(fast, FastModel)
    hs = _histories(5)
    items, lengths = et.batch(hs, m.max_len)
    with torch.no_grad():
        hu = fast(items, lengths)
        top = torch.sort(fast.scores(hu), dim=-1, descending=True, stable=True).indices[:, :10]
    with libelastic.Session(m, backend="cpu", threads=1) as s:
        want = s.user_vectors(hs)
        ids, _ = s.recommend(hs, k=10, exclude_history=False)
    err = _rel(hu.numpy().astype(np.float64), want.astype(np.float64))
    assert err.max() < 1e-5, err.max()
    assert np.array_equal(top.numpy() + 1, ids)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_fast_matches_exact_port_float64(config) -> None:
    """In float64 the fast port and the exact port agree to rounding (1e-12)."""
    m = libelastic.Model.init_random(config, seed=22)
    exact = et.to_torch(m).double().eval()
    fast = et.to_torch(m, fast=True).double().eval()
    items, lengths = et.batch(_histories(6), m.max_len)
    with torch.no_grad():
        a, b = exact(items, lengths).numpy(), fast(items, lengths).numpy()
    assert _rel(b, a).max() < 1e-12


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[2]], ids=["cloze", "causal"])
def test_fast_position_loss_matches_trainer(config) -> None:
    """The loss of objectives cloze (ELASTIC, mask token) and causal (SASRec) on
    one batch, no dropout: the fast port against the C trainer."""
    m = libelastic.Model.init_random(config, seed=23)
    fast = et.to_torch(m, fast=True, dropout=0.0).double().eval()
    rng = np.random.default_rng(7)
    inputs, targets = [], []
    for n in (1, 5, 30, 48):
        seq = [int(v) for v in rng.integers(1, I + 1, n)]              # oldest first
        if config.get("mask_token"):
            pos = rng.random(n) < 0.3
            pos[-1] = True
            tgt = [v if p else 0 for v, p in zip(seq, pos)]
            seq = [I + 1 if p else v for v, p in zip(seq, pos)]
        else:
            tgt = [int(v) for v in rng.integers(1, I + 1, n)]           # next item
        inputs.append(seq)
        targets.append(tgt)
    with libelastic.Trainer(m, dropout=0.0, threads=1) as tr:
        want, _ = tr.gradient_positions(inputs, targets)
    n = max(len(s) for s in inputs)
    items = torch.zeros(len(inputs), n, dtype=torch.long)
    tg = torch.zeros_like(items)
    for b, (s, t) in enumerate(zip(inputs, targets)):   # recency order: column 0 newest
        items[b, :len(s)] = torch.tensor(s[::-1])
        tg[b, :len(t)] = torch.tensor(t[::-1])
    lengths = torch.tensor([len(s) for s in inputs])
    with torch.no_grad():
        got = float(fast.loss_positions(items, lengths, tg))
    assert abs(got - want) <= 1e-5 * abs(want), (got, want)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3]], ids=["elastic", "sasrec-mask"])
def test_fast_onnx_export(config, exporter) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from libelastic.torch_fast import export_onnx
    m = libelastic.Model.init_random(config, seed=24)
    fast = et.to_torch(m, fast=True).eval()
    items, lengths = et.batch(_histories(8), m.max_len)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        used = export_onnx(fast, items, lengths, path, exporter)
        assert used.lower().startswith(exporter)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"items": items.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        want = fast(items, lengths).numpy()
    assert _rel(got.astype(np.float64), want.astype(np.float64)).max() < 1e-5
