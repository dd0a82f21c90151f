#!/usr/bin/env python3
"""test_reference_selfcheck.py - sanity checks of the float64 reference
(tools/reference/elastic_ref.py) against values derived by hand from
docs/spec/model.md, so that the golden tests compare the C library with
something that is itself checked.

Run: python3 tests/golden/test_reference_selfcheck.py
Ends with a line "N passed, M failed" and exits non-zero on any failure.
If numpy or safetensors cannot be imported the run FAILS (it never skips).
"""
import math
import os
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))

try:
    import numpy as np
    import safetensors  # noqa: F401  (the reference's model files need it)
    import elastic_ref as ref
except ImportError as exc:  # CI installs them: a missing one is a failure, not a skip
    print(f"FAIL: cannot import the reference's dependencies ({exc}); "
          "install them with: python3 -m pip install numpy safetensors")
    print("0 passed, 1 failed")
    sys.exit(1)

TESTS = []


def test(fn):
    """Registers a check."""
    TESTS.append(fn)
    return fn


def close(a, b, tol=1e-13):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes {a.shape} != {b.shape}"
    assert np.allclose(a, b, rtol=tol, atol=tol), f"\n{a}\n!=\n{b}"


def tiny_config(**kw):
    base = dict(num_items=6, max_len=4, hidden=4, heads=2, layers=1, experts=2, ffn=8,
                mem_subkeys=2, mem_key=2, mem_topk=1)
    base.update(kw)
    return ref.Config(**base).resolved()


# ---------------------------------------------------------------- building blocks

@test
def layer_norm_by_hand():
    # z = [1, 2, 3]: mean 2, biased variance 2/3.
    z = np.array([1.0, 2.0, 3.0])
    s = math.sqrt(2.0 / 3.0 + 1e-5)
    close(ref.layer_norm(z, np.array([2.0, 1.0, 1.0]), np.array([0.5, 0.0, 0.0]), 1e-5),
          [-2.0 / s + 0.5, 0.0, 1.0 / s])
    # eps -> 0 gives +-sqrt(3/2)
    close(ref.layer_norm(z, np.ones(3), np.zeros(3), 1e-300),
          [-1.224744871391589, 0.0, 1.224744871391589])
    # per row over the last axis
    close(ref.layer_norm(np.array([[1.0, 3.0], [10.0, 10.0]]), np.ones(2), np.zeros(2), 1e-300),
          [[-1.0, 1.0], [0.0, 0.0]])


@test
def gelu_exact_erf():
    close(ref.gelu(np.array([1.0])), [0.8413447460685429], 1e-15)
    close(ref.gelu(np.array([-1.0])), [-0.15865525393145707], 1e-15)
    close(ref.gelu(np.array([0.0, 3.0])), [0.0, 3.0 * 0.9986501019683699], 1e-15)
    # not the tanh approximation: 0.5(1+tanh(sqrt(2/pi)(1+0.044715))) = 0.8411919906082768
    assert abs(ref.gelu(np.array([1.0]))[0] - 0.8411919906082768) > 1e-4


@test
def softmax_masks_minus_inf():
    close(ref.softmax(np.array([0.0, math.log(3.0), -np.inf])), [0.25, 0.75, 0.0])


@test
def linear_is_pytorch_convention():
    p = {"x.weight": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),  # [out=3, in=2]
         "x.bias": np.array([0.5, 0.0, -1.0])}
    close(ref.linear(np.array([1.0, -1.0]), p, "x"), [-0.5, -1.0, -2.0])


def identity_attention(prefix, d):
    return {f"{prefix}.{w}.weight": np.eye(d) for w in "qkvo"} | \
           {f"{prefix}.{w}.bias": np.zeros(d) for w in "qkvo"}


@test
def mha_two_heads_by_hand():
    # d = 2, h = 2: head 0 is column 0, head 1 column 1, head size 1 (scale 1).
    p = identity_attention("a", 2)
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    e = math.e
    # query 0, head 0: logits [1, 0] -> weights [e, 1]/(1+e); values col 0 = [1, 0]
    # query 0, head 1: logits [0, 0] -> [1/2, 1/2]; values col 1 = [0, 1]
    # query 1, head 0: logits [0, 0]; head 1: logits [0, 1]
    expect = [[e / (1 + e), 0.5], [0.5, e / (1 + e)]]
    close(ref.mha(X, X, p, "a", 2), expect)


@test
def mha_causal_n2_by_hand():
    # SASRec (spec 7): the query at recency r sees keys r' >= r.  n = 2, d = 2, h = 1.
    p = identity_attention("a", 2)
    X = np.array([[1.0, 0.0], [0.0, 1.0]])   # row 0 = most recent
    allowed = ref.causal_allowed(2)
    assert allowed.tolist() == [[True, True], [False, True]]
    w = 1.0 / (1.0 + math.exp(-1.0 / math.sqrt(2.0)))  # logits [1, 0] / sqrt(2)
    close(ref.mha(X, X, p, "a", 1, allowed), [[w, 1.0 - w], [0.0, 1.0]])


@test
def top_indices_ties_by_smaller_index():
    assert ref.top_indices(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 3).tolist() == [1, 2, 4]
    assert ref.top_indices(np.array([0.0, 0.0]), 1).tolist() == [0]


# ---------------------------------------------------------------- product-key memory (3.2)

@test
def memory_read_m2_t1_by_hand():
    # m = 2, c = 2 (halves of size 1), t = 1.
    subkeys = np.array([[[1.0], [2.0]], [[3.0], [-1.0]]])
    values = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 7.0], [-1.0, -1.0]])  # slots 0..3
    # q = [1, 1]: sa = [1, 2] -> x = 1; sb = [3, -1] -> y = 0; slot = 1*2 + 0 = 2, w = 1
    slots, w, P = ref.memory_read(np.array([1.0, 1.0]), subkeys, values, 1)
    assert slots.tolist() == [2]
    close(w, [1.0])
    close(P, [5.0, 7.0])
    # q = [-1, -1]: sa = [-1, -2] -> x = 0; sb = [-3, 1] -> y = 1; slot 1
    slots, w, P = ref.memory_read(np.array([-1.0, -1.0]), subkeys, values, 1)
    assert slots.tolist() == [1]
    close(P, [0.0, 1.0])


@test
def memory_read_m2_t2_by_hand():
    subkeys = np.array([[[1.0], [2.0]], [[3.0], [-1.0]]])
    values = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 7.0], [-1.0, -1.0]])
    # q = [1, 1]: sa = [1, 2], sb = [3, -1]; pairs (x,y): (0,0)=4 s0, (0,1)=0 s1,
    # (1,0)=5 s2, (1,1)=1 s3 -> keep s2 (5), s0 (4); w = softmax([5, 4])
    slots, w, P = ref.memory_read(np.array([1.0, 1.0]), subkeys, values, 2)
    assert slots.tolist() == [2, 0]
    e = math.e
    close(w, [e / (1 + e), 1 / (1 + e)])
    close(P, [5 * e / (1 + e) + 1 / (1 + e), 7 * e / (1 + e)])


@test
def memory_read_ties():
    values = np.arange(8.0).reshape(4, 2)
    # sub-key tie: sa = [1, 1] with t = 1 keeps x = 0 (smaller index)
    subkeys = np.array([[[1.0], [1.0]], [[1.0], [2.0]]])
    slots, _, _ = ref.memory_read(np.array([1.0, 1.0]), subkeys, values, 1)
    assert slots.tolist() == [0 * 2 + 1], slots
    # pair tie: sa = [1, 2], sb = [2, 1], t = 2: pairs s0 = 3, s1 = 2, s2 = 4, s3 = 3;
    # keep s2 (4) then the tie at 3 between s0 and s3 goes to the smaller slot s0.
    subkeys = np.array([[[1.0], [2.0]], [[2.0], [1.0]]])
    slots, w, _ = ref.memory_read(np.array([1.0, 1.0]), subkeys, values, 2)
    assert slots.tolist() == [2, 0], slots
    e = math.e
    close(w, [e / (1 + e), 1 / (1 + e)])
    assert ref.memory_margin(np.array([1.0, 1.0]), subkeys, 2) == 0.0  # an exact tie


@test
def imr_uses_mean_of_read_rows():
    cfg = tiny_config()
    params = ref.init_params(cfg, 3, weight_std=0.5, bias_std=0.1, norm_std=0.2)
    X = ref.embed(cfg, params, [1, 2, 3])
    u = ref.layer_norm(X.mean(axis=0), params["imr.norm.weight"], params["imr.norm.bias"],
                       cfg.ln_eps)
    Q = (params["imr.query.weight"] @ u + params["imr.query.bias"]).reshape(2, 2)
    P = ref.imr(cfg, params, X)
    for j in range(2):
        _, _, Pj = ref.memory_read(Q[j], params["imr.subkeys"], params["imr.values"], 1)
        close(P[j], Pj)


# ---------------------------------------------------------------- the forward pass

@test
def embedding_uses_recency_positions():
    cfg = tiny_config()
    params = ref.init_params(cfg, 1, weight_std=0.5)
    X = ref.embed(cfg, params, [5, 2, 3, 4, 6])  # oldest first, longer than N = 4
    s = [6, 4, 3, 2]                             # most recent first, 5 is not read
    close(X, params["item_emb"][s] + params["pos_emb"][[0, 1, 2, 3]])


def zero_residual_branches(cfg, params):
    """Zeroes every `o` and `fc2` so that every layer is the identity."""
    for name in params:
        if ".o." in name or ".fc2." in name:
            params[name][...] = 0.0


@test
def identity_layers_give_final_norm_of_x0():
    for model in ("elastic", "sasrec"):
        cfg = tiny_config(model=model, layers=2)
        params = ref.init_params(cfg, 2, weight_std=0.5, bias_std=0.3, norm_std=0.3)
        zero_residual_branches(cfg, params)
        x0 = params["item_emb"][4] + params["pos_emb"][0]
        expect = ref.layer_norm(x0, params["final_norm.weight"], params["final_norm.bias"],
                                cfg.ln_eps)
        close(ref.user_vector(cfg, params, [1, 2, 4]), expect)


@test
def sasrec_is_causal():
    # Changing the most recent item changes X[0] only; changing the oldest changes all rows.
    cfg = tiny_config(model="sasrec", layers=2)
    params = ref.init_params(cfg, 4, weight_std=0.5, bias_std=0.1, norm_std=0.2)
    a = ref.sasrec_states(cfg, params, [1, 2, 3, 4])
    b = ref.sasrec_states(cfg, params, [1, 2, 3, 5])
    close(a[1:], b[1:], 0.0)
    assert np.abs(a[0] - b[0]).max() > 1e-3
    c = ref.sasrec_states(cfg, params, [6, 2, 3, 4])
    assert (np.abs(a - c).max(axis=1) > 1e-6).all()


@test
def elastic_is_not_causal():
    # ELASTIC's items see each other through the experts: the most recent item moves every row.
    cfg = tiny_config(layers=1)
    params = ref.init_params(cfg, 5, weight_std=0.5, bias_std=0.1, norm_std=0.2)
    a, _ = ref.elastic_states(cfg, params, [1, 2, 3, 4])
    b, _ = ref.elastic_states(cfg, params, [1, 2, 3, 5])
    assert (np.abs(a - b).max(axis=1) > 1e-6).all()


@test
def only_the_last_n_items_are_read():
    for model in ("elastic", "sasrec"):
        cfg = tiny_config(model=model)
        params = ref.init_params(cfg, 6, weight_std=0.5)
        close(ref.user_vector(cfg, params, [6, 5, 1, 2, 3, 4]),
              ref.user_vector(cfg, params, [1, 2, 3, 4]), 0.0)


@test
def scores_are_dot_products():
    cfg = tiny_config()
    params = ref.init_params(cfg, 7, weight_std=0.5)
    hu = ref.user_vector(cfg, params, [2, 3])
    sc = ref.scores(cfg, params, [[2, 3]])[0]
    assert sc.shape == (6,)
    close(sc[4], float(np.dot(hu, params["item_emb"][5])))


# ---------------------------------------------------------------- top-K and batches

@test
def top_k_ties_and_exclusion():
    s = np.array([1.0, 3.0, 3.0, 2.0, 3.0])     # items 1..5
    ids, sc = ref.top_k(s, 3, history=[2])      # item 2 left out; 3 and 5 tie, 3 first
    assert ids.tolist() == [3, 5, 4], ids
    close(sc, [3.0, 3.0, 2.0])
    ids, _ = ref.top_k(s, 3, history=[2], exclude_history=False)
    assert ids.tolist() == [2, 3, 5]
    ids, sc = ref.top_k(s, 5, history=[1, 2, 2, 4])  # fewer left than K: id 0, -inf
    assert ids.tolist() == [3, 5, 0, 0, 0], ids
    assert np.isneginf(sc[2:]).all()


@test
def exclusion_uses_whole_history():
    # N = 4, but item 5 (older than the N items read) is still left out.
    cfg = tiny_config()
    params = ref.init_params(cfg, 8, weight_std=0.5)
    hist = [5, 1, 2, 3, 4]
    ids, _ = ref.recommend(cfg, params, [hist], 6)
    assert ids[0].tolist()[:1] == [6] and ids[0].tolist()[1:] == [0] * 5, ids


@test
def batch_equals_single():
    for model in ("elastic", "sasrec"):
        cfg = tiny_config(model=model)
        params = ref.init_params(cfg, 9, weight_std=0.5)
        hists = [[1], [2, 3, 4, 5, 6, 1], [3, 3], [6, 5, 4]]
        items, offsets = ref.lists_to_csr(hists)
        assert offsets.tolist() == [0, 1, 7, 9, 12]
        assert ref.csr_to_lists(items, offsets) == hists
        batch = ref.user_vectors(cfg, params, hists)
        for b, h in enumerate(hists):
            close(batch[b], ref.user_vector(cfg, params, h), 0.0)


@test
def bad_histories_are_rejected():
    cfg = tiny_config()
    params = ref.init_params(cfg, 10)
    for hist in ([], [0], [7]):
        try:
            ref.user_vector(cfg, params, hist)
        except ValueError:
            continue
        raise AssertionError(f"history {hist} was accepted")


# ---------------------------------------------------------------- config, init, files

@test
def config_defaults_and_constraints():
    c = ref.Config(num_items=10).resolved()
    assert (c.max_len, c.hidden, c.heads, c.layers, c.experts, c.ffn, c.mem_subkeys,
            c.mem_key, c.mem_topk, c.ln_eps) == (200, 64, 2, 2, 16, 256, 128, 64, 8, 1e-5)
    bad = [(dict(num_items=0), "num_items"), (dict(hidden=10, heads=3), "heads"),
           (dict(mem_key=5), "mem_key"), (dict(mem_subkeys=4, mem_topk=5), "mem_topk"),
           (dict(layers=0), "layers"), (dict(ln_eps=0.0), "ln_eps"), (dict(model="x"), "model")]
    for kw, key in bad:
        try:
            ref.Config(**{"num_items": 10, **kw}).resolved()
        except ValueError as exc:
            assert f"'{key}'" in str(exc), str(exc)
            continue
        raise AssertionError(f"{kw} was accepted")
    # SASRec ignores the memory keys
    ref.Config(model="sasrec", num_items=10, mem_key=5, mem_topk=500).resolved()


@test
def init_follows_spec_5():
    cfg = ref.Config(num_items=300, hidden=64, experts=4, mem_subkeys=64, mem_key=32).resolved()
    p = ref.init_params(cfg, 11)
    assert set(p) == set(ref.param_shapes(cfg))
    assert (p["item_emb"][0] == 0).all()
    assert abs(p["item_emb"][1:].std() - 0.02) < 0.001
    assert abs(p["imr.subkeys"].std() - math.sqrt(1 / 16)) < 0.01
    assert (p["layers.0.agg.q.bias"] == 0).all() and (p["final_norm.weight"] == 1).all()
    assert (p["layers.1.ffn_x.norm.bias"] == 0).all()
    assert abs(p["layers.1.ffn_x.fc2.weight"].std() - 0.02) < 0.001
    for v in p.values():  # float32-representable
        assert (v.astype(np.float32).astype(np.float64) == v).all()
    assert p["layers.0.ffn_p.fc1.weight"].shape == (256, 64)
    assert p["imr.query.weight"].shape == (4 * 32, 64)
    assert p["imr.values"].shape == (64 * 64, 64)
    s = ref.param_shapes(ref.Config(model="sasrec", num_items=5, hidden=8, layers=1))
    assert sorted(s) == sorted(["item_emb", "pos_emb", "final_norm.weight", "final_norm.bias",
                                "layers.0.attn.norm.weight", "layers.0.attn.norm.bias"] +
                               [f"layers.0.attn.{w}.{x}" for w in "qkvo" for x in ("weight", "bias")] +
                               [f"layers.0.ffn_x.{n}" for n in ("norm.weight", "norm.bias",
                                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")])


@test
def model_file_round_trip():
    from safetensors import safe_open
    for model in ("elastic", "sasrec"):
        cfg = tiny_config(model=model, ln_eps=1e-6)
        params = ref.init_params(cfg, 12, weight_std=0.5)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.safetensors")
            ref.save_model(path, cfg, params, {"item_map": "x"})
            with safe_open(path, "np") as f:
                meta = f.metadata()
                assert f.get_tensor("item_emb").dtype == np.float32
            for key in ref.CONFIG_KEYS:
                assert isinstance(meta[key], str), key
            assert meta["format_version"] == "1" and meta["model"] == model
            assert meta["hidden"] == "4" and float(meta["ln_eps"]) == 1e-6
            cfg2, params2, meta2 = ref.load_model(path)
            assert cfg2 == cfg and meta2["item_map"] == "x"
            for name in params:
                close(params2[name], params[name], 0.0)


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
        except Exception:  # noqa: BLE001  report every failure and go on
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
