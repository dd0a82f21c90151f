"""test_torch_bridge.py - libelastic.torch: to_torch / from_torch between the C
library's models and the PyTorch port, bit for bit, and the port's outputs
against the C library's.  Skipped without torch (CI does not install it).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import libelastic  # noqa: E402
import libelastic.torch as et  # noqa: E402

CONFIGS = [
    {"num_items": 60, "hidden": 32, "max_len": 20, "experts": 4, "mem_subkeys": 8,
     "mem_topk": 4},
    {"model": "sasrec", "num_items": 60, "hidden": 32, "max_len": 20, "layers": 2},
]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("config", CONFIGS, ids=["elastic", "sasrec"])
def test_round_trip_bit_for_bit(config, tmp_path) -> None:
    m = libelastic.Model.init_random(config, seed=11)
    m.set_item_ids([f"item-{v}" for v in range(60)])
    m.set_metadata("note", "kept")
    module = et.to_torch(m)
    assert module.config["num_items"] == 60
    assert module.file_metadata["item_ids"] == m.metadata["item_ids"]
    back = et.from_torch(module)
    assert back.config == m.config and back.metadata == m.metadata
    for name in m.tensor_names:
        assert np.array_equal(_bits(back.tensor(name)), _bits(m.tensor(name))), name
    # through a file written by torch, too
    path = str(tmp_path / "t.st")
    et.save(module, path, module.file_metadata)
    loaded = libelastic.Model.load(path)
    for name in m.tensor_names:
        assert np.array_equal(_bits(loaded.tensor(name)), _bits(m.tensor(name))), name
    assert loaded.item_ids == m.item_ids


@pytest.mark.parametrize("config", CONFIGS, ids=["elastic", "sasrec"])
def test_port_matches_library(config) -> None:
    m = libelastic.Model.init_random(config, seed=12)
    module = et.to_torch(m).double().eval()
    rng = np.random.default_rng(3)
    hs = [[int(v) for v in rng.integers(1, 61, n)] for n in (1, 5, 20, 33)]
    with torch.no_grad():
        hu = module(*et.batch(hs, m.max_len)).numpy()
    with libelastic.Session(m, backend="cpu") as s:
        got = s.user_vectors(hs)
        ids, _ = s.recommend(hs, k=5)
    err = np.linalg.norm(got - hu, axis=1) / np.linalg.norm(hu, axis=1)
    assert err.max() < 1e-5
    with torch.no_grad():
        tids, _ = module.recommend(*et.batch(hs, m.max_len), 5, hs)
    assert np.array_equal(tids.numpy(), ids)


def test_from_torch_float64_and_mismatch() -> None:
    m = libelastic.Model.init_random(CONFIGS[0], seed=13)
    module = et.to_torch(m).double()
    back = et.from_torch(module)
    assert np.array_equal(back.tensor("item_emb"), m.tensor("item_emb"))
    sas = et.build(dict(CONFIGS[1]))
    sas.file_metadata = {}
    assert et.from_torch(sas).kind == "sasrec"
