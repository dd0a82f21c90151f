#!/usr/bin/env python3
"""test_torch.py - golden tests of the PyTorch port (libelastic.torch,
python/libelastic/torch.py) against the independent NumPy float64 reference
(tools/reference/elastic_ref.py) and, through the Python package (the project's
one binding), the C library's model files.

Models are drawn at test time by the reference from recorded seeds, with the
case list of test_golden.py (same cases, same seeds: base seed + 10 i), saved
by the reference and loaded by torch.  For each case, torch in float32 and in
float64 must give:
  - user vectors and scores within relative L2 1e-5 (per user) of the reference;
  - the same top-K (history left out) except where the reference's own scores
    at a differing place are within 1e-5 relative (a tie: printed, not hidden);
    torch's list ordered by score, ties by the smaller id;
  - each user run alone equal to its batch row (spec 4).
Files: the state_dict written by torch is read back by the reference with
exactly the drawn parameters; torch -> file -> C (load + save) -> torch and
torch -> file -> reference (load + save) -> torch are bit-identical; C loads
torch's file and its user vectors match the reference; a model C draws and saves
is loaded by torch and matches the reference.  Further jobs: the batch layout,
dropout, the loss against the reference's scores, a float64 gradient check of
the loss (autograd vs central differences, h = 1e-6), the CLI, and CUDA where
torch sees a GPU.

Run: python3 tests/golden/test_torch.py [--lib build/libelastic.so] [--case NAME] [--seed S]
     (the library may also come from ELASTIC_LIB; without one the C checks are skipped
     and said so).  Exits 77 with "SKIP: torch not importable" when torch is missing.
Ends with a line "N passed, M failed" and a table of the largest errors.
"""
import argparse
import copy
import io
import math
import os
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stdout
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

# Before torch loads its OpenMP runtime: idle threads must not spin between the many
# tiny ops here (on a busy 2-core machine spinning slows the run down ten times).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:
    import torch
except ImportError as exc:
    print(f"SKIP: torch not importable ({exc}); install it with: "
          "python3 -m pip install torch")
    sys.exit(77)

import test_golden as golden  # noqa: E402  (the case list, seeds, the library, reference)
import libelastic  # noqa: E402
import libelastic.torch as et  # noqa: E402

np = golden.np
ref = golden.ref

TOL_REF = 1e-5                                       # torch against the reference (rel L2)
TOL_TIE = 1e-5                                       # top-K ties (relative to max |score|)
# A user alone against its batch row (spec 4).  float64 shows that padding changes
# nothing (1e-12); in float32 the padded shapes take other GEMM / reduction paths, so
# rows differ by float32 rounding (~1e-6), well inside TOL_REF of the reference.
TOL_BATCH = {torch.float32: 5e-6, torch.float64: 1e-12}
DTYPES = (("fp32", torch.float32), ("fp64", torch.float64))

torch.set_num_threads(1)  # the tensors are tiny: threads only add overhead


# ==========================================================================
# helpers
# ==========================================================================

def rel_l2(got, want):
    return golden.rel_l2(np.asarray(got, dtype=np.float64), want)


def as_np(t: "torch.Tensor"):
    return t.detach().to("cpu", torch.float64).numpy()


def bits_equal(a: "torch.Tensor", b: "torch.Tensor") -> bool:
    """Same dtype, shape and bit pattern (so -0.0 != 0.0 and NaN payloads count)."""
    return (a.dtype == b.dtype == torch.float32 and a.shape == b.shape and
            torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32)))


def compare_state_dicts(got: Dict, want: Dict, what: str, problems: List[str]) -> None:
    if set(got) != set(want):
        problems.append(f"{what}: names differ: {sorted(set(got) ^ set(want))}")
        return
    bad = [n for n in want if not bits_equal(got[n].cpu(), want[n].cpu())]
    if bad:
        problems.append(f"{what}: not bit-identical: {bad}")


def check_topk(ids, scores, ref_row, history, k, exclude, problems, notes, where) -> None:
    """One user's torch top-K against the reference's scores (ties as in the docstring)."""
    want_ids, want_sc = ref.top_k(ref_row, k, history, exclude)
    excluded = set(int(v) for v in history) if exclude else set()
    scale = float(np.max(np.abs(ref_row)))
    ids = [int(v) for v in ids]
    n_want = int(np.sum(want_ids != 0))
    real = [v for v in ids if v != 0]
    if len(real) != n_want or any(v != 0 for v in ids[n_want:]) or len(set(real)) != len(real):
        problems.append(f"{where}: ids {ids}, want {n_want} distinct ids then 0")
        return
    if not np.all(np.isneginf(scores[n_want:])):
        problems.append(f"{where}: padding scores are not -inf: {scores[n_want:]}")
    for j in range(n_want):
        v = ids[j]
        if not 1 <= v <= len(ref_row) or v in excluded:
            problems.append(f"{where}: place {j + 1}: id {v} out of range or in the history")
            return
        if j > 0 and (scores[j] > scores[j - 1] or
                      (scores[j] == scores[j - 1] and v < ids[j - 1])):
            problems.append(f"{where}: torch's list out of order at place {j + 1}")
        if abs(float(scores[j]) - ref_row[v - 1]) > TOL_REF * scale:
            problems.append(f"{where}: place {j + 1}: torch's score of item {v} is "
                            f"{float(scores[j])!r}, the reference's {ref_row[v - 1]!r}")
        if v != want_ids[j]:
            gap = abs(ref_row[v - 1] - want_sc[j])
            if gap <= TOL_TIE * scale:
                notes.append(f"{where}: tie at place {j + 1}: torch item {v}, reference item "
                             f"{int(want_ids[j])}, reference scores differ by {gap:.3g}")
            else:
                problems.append(f"{where}: place {j + 1}: torch item {v}, reference item "
                                f"{int(want_ids[j])}; gap {gap:.3g} > {TOL_TIE * scale:.3g}")


class CLib(golden.Lib):
    """golden.Lib plus the calls that create and save models."""

    @staticmethod
    def save(model, path: str) -> None:
        model.save(path)

    @staticmethod
    def init_random(meta: Dict[str, str], seed: int):
        return libelastic.Model.init_random(meta, seed)


# ==========================================================================
# the golden cases
# ==========================================================================

def run_torch(module, histories, case, cfg, ref_hu, ref_scores, dtype, label,
              problems, notes) -> Dict[str, float]:
    """One dtype on one case; returns the largest errors."""
    m = copy.deepcopy(module).to(dtype).eval()
    items, lengths = et.batch(histories, cfg.max_len)
    with torch.no_grad():
        hu = m(items, lengths)
        sc = m.scores(hu)
    e_hu, e_sc = rel_l2(as_np(hu), ref_hu), rel_l2(as_np(sc), ref_scores)
    for what, e in (("user vector", e_hu), ("scores", e_sc)):
        for b in np.nonzero(e > TOL_REF)[0]:
            problems.append(f"{label}: {what} of user {b} (length {len(histories[b])}): "
                            f"relative L2 error {e[b]:.3g} > {TOL_REF:g}")
    worst = 0.0
    with torch.no_grad():
        for b, h in enumerate(histories):            # spec 4: a batch row = the user alone
            i1, l1 = et.batch([h], cfg.max_len)
            hu1 = m(i1, l1)
            e = max(float(rel_l2(as_np(hu1)[0], as_np(hu)[b])),
                    float(rel_l2(as_np(m.scores(hu1))[0], as_np(sc)[b])))
            worst = max(worst, e)
            if e > TOL_BATCH[dtype]:
                problems.append(f"{label}: user {b} alone differs from its batch row by {e:.3g}")
    for exclude in ([True, False] if case.also_keep_history else [True]):
        ids, vals = m.recommend(items, lengths, case.top_k, histories if exclude else None)
        for b, h in enumerate(histories):
            check_topk(ids[b].tolist(), as_np(vals[b]), ref_scores[b], h, case.top_k, exclude,
                       problems, notes, f"{label}: top-{case.top_k} (exclude={int(exclude)}) "
                       f"user {b}")
    return {"hu": float(e_hu.max()), "scores": float(e_sc.max()), "batch": worst}


def check_files(lib: Optional[CLib], module, cfg, params, histories, ref_hu, tmp,
                problems) -> Optional[float]:
    """Round trips of the model file; returns C's user-vector error on torch's file."""
    sd0 = {n: t.clone() for n, t in module.state_dict().items()}
    p_torch = os.path.join(tmp, "torch.safetensors")
    et.save(module, p_torch, {"written_by": "test_torch"})
    # the reference reads torch's file: the same config and exactly the drawn parameters
    cfg2, params2, meta2 = ref.load_model(p_torch)
    if cfg2 != cfg:
        problems.append(f"reference reads config {cfg2} from torch's file, want {cfg}")
    if meta2.get("written_by") != "test_torch":
        problems.append("torch's file lost the extra metadata")
    for name, want in params.items():
        if not np.array_equal(params2[name], want):
            problems.append(f"torch's file: tensor {name} differs from the drawn parameters")
    # torch -> reference (load + save) -> torch
    p_ref = os.path.join(tmp, "ref.safetensors")
    ref.save_model(p_ref, cfg2, params2)
    compare_state_dicts(et.load(p_ref).state_dict(), sd0, "torch -> reference -> torch",
                        problems)
    if lib is None:
        return None
    # torch -> C (load + save) -> torch; C's outputs on torch's file
    model = lib.load_model(p_torch)
    try:
        problems += [f"C on torch's file: {p}" for p in golden.check_config(lib, cfg, model)]
        p_c = os.path.join(tmp, "c.safetensors")
        lib.save(model, p_c)
        compare_state_dicts(et.load(p_c).state_dict(), sd0, "torch -> C -> torch", problems)
        session = lib.session(model)
        try:
            hu = lib.user_vectors(session, histories, cfg.hidden)
        finally:
            session.close()
    finally:
        model.close()
    e = rel_l2(hu, ref_hu)
    if e.max() > TOL_REF:
        problems.append(f"C on torch's file: user vector error {e.max():.3g} > {TOL_REF:g}")
    return float(e.max())


def run_case(lib, case, seed, table) -> bool:
    cfg = ref.Config(**case.config).resolved()
    params = ref.init_params(cfg, seed, case.weight_std, case.bias_std, case.norm_std,
                             case.linear_gain)
    if case.tweak:
        case.tweak(cfg, params)
    histories = golden.draw_histories(cfg.num_items, case.lengths, seed + 1)
    print(f"--- case {case.name} (seed {seed}): model={cfg.model} I={cfg.num_items} "
          f"N={cfg.max_len} d={cfg.hidden} h={cfg.heads} L={cfg.layers}"
          + (f" k={cfg.experts} m={cfg.mem_subkeys} c={cfg.mem_key} t={cfg.mem_topk}"
             if cfg.model == "elastic" else "") + f" f={cfg.ffn}; lengths {list(case.lengths)}")
    t0 = time.time()
    ref_hu = ref.user_vectors(cfg, params, histories)
    ref_scores = ref_hu @ params["item_emb"][1:cfg.num_items + 1].T  # never the mask row
    if cfg.model == "elastic":
        margin = min(ref.imr_margin(cfg, params, h) for h in histories)
        print(f"    reference {time.time() - t0:.2f}s; smallest memory top-t margin {margin:.3g}")
    problems: List[str] = []
    notes: List[str] = []
    row = {"case": case.name}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "drawn.safetensors")
        ref.save_model(path, cfg, params, {"golden_case": case.name, "golden_seed": str(seed)})
        module = et.load(path)                       # a file written by the reference
        want_cfg = {k: getattr(cfg, k) for k in et.CONFIG_KEYS}
        if module.config != want_cfg:
            problems.append(f"torch reads config {module.config}, want {want_cfg}")
        if module.file_metadata.get("golden_seed") != str(seed):
            problems.append("torch lost the file's extra metadata")
        for label, dtype in DTYPES:
            err = run_torch(module, histories, case, cfg, ref_hu, ref_scores, dtype, label,
                            problems, notes)
            print(f"    torch {label}: user vector rel L2 {err['hu']:.3g}, scores rel L2 "
                  f"{err['scores']:.3g}, batch vs alone {err['batch']:.3g}")
            for key, value in err.items():
                row[f"{label} {key}"] = value
        c_err = check_files(lib, module, cfg, params, histories, ref_hu, tmp, problems)
        row["C on torch file"] = c_err
        print("    files: torch -> reference -> torch" + (" and torch -> C -> torch" if lib
                                                         else "") + " round trips checked"
              + (f"; C on torch's file: user vector rel L2 {c_err:.3g}" if lib else ""))
    row["ties"] = len(notes)
    table.append(row)
    for n in notes:
        print(f"    note: {n}")
    for p in problems[:40]:
        print(f"    FAIL: {p}")
    return not problems


# ==========================================================================
# other jobs
# ==========================================================================

TINY = dict(model="elastic", num_items=12, max_len=6, hidden=8, heads=2, layers=1, experts=2,
            ffn=16, mem_subkeys=4, mem_key=4, mem_topk=2)


def job_names() -> bool:
    """State_dict names and shapes are exactly the spec's (spec 2 and 7), and both
    kinds of module are built from a config with the derived defaults."""
    ok = True
    for cfgd in (golden.small(), golden.small(layers=3, hidden=12, heads=3, mem_key=6),
                 dict(model="sasrec", num_items=9, max_len=4, hidden=8, heads=2, layers=2)):
        cfg = ref.Config(**cfgd).resolved()
        module = et.build(cfgd)
        got = {n: tuple(t.shape) for n, t in module.state_dict().items()}
        want = ref.param_shapes(cfg)
        if got != want:
            ok = False
            print(f"    FAIL: {cfg.model}: names/shapes differ: "
                  f"{sorted(set(got.items()) ^ set(want.items()))}")
        if module.config != {k: getattr(cfg, k) for k in et.CONFIG_KEYS}:
            ok = False
            print(f"    FAIL: config {module.config}")
    # spec 5 initialisation of a fresh module (statistics of a large draw)
    torch.manual_seed(0)
    m = et.build(golden.small(num_items=2000, hidden=64, mem_key=64, mem_subkeys=32))
    sdict = m.state_dict()
    checks = {
        "item_emb row 0 is zero": bool((sdict["item_emb"][0] == 0).all()),
        "item_emb std 0.02": abs(float(sdict["item_emb"][1:].std()) / 0.02 - 1) < 0.02,
        "Linear weight std 0.02": abs(float(sdict["layers.0.agg.q.weight"].std()) / 0.02 - 1)
        < 0.05,
        "imr.values std 0.02": abs(float(sdict["imr.values"].std()) / 0.02 - 1) < 0.05,
        "imr.subkeys std sqrt(1/(c/2))":
            abs(float(sdict["imr.subkeys"].std()) / math.sqrt(1 / 32) - 1) < 0.05,
        "biases 0": all(bool((t == 0).all()) for n, t in sdict.items() if n.endswith("bias")),
        "LayerNorm weights 1": all(bool((t == 1).all()) for n, t in sdict.items()
                                   if "norm" in n and n.endswith("weight")),
    }
    for what, good in checks.items():
        if not good:
            ok = False
            print(f"    FAIL: spec 5 initialisation: {what}")
    for kw, key in ((dict(num_items=0), "num_items"), (dict(hidden=10, heads=3), "heads"),
                    (dict(mem_key=5), "mem_key"), (dict(mem_subkeys=4, mem_topk=5), "mem_topk")):
        try:
            et.build({"num_items": 10, **kw})
            ok = False
            print(f"    FAIL: accepted {kw}")
        except ValueError as exc:
            if f"'{key}'" not in str(exc):
                ok = False
                print(f"    FAIL: message for {kw} does not name '{key}': {exc}")
    if ok:
        print("    names and shapes = reference's param_shapes; spec 5 initialisation; bad "
              "configs rejected naming the key")
    return ok


def job_batch_layout() -> bool:
    """batch(): column 0 = most recent, only the most recent N read, padding 0 (hand-derived)."""
    items, lengths = et.batch([[1, 2, 3], [4], list(range(1, 11))], max_len=4)
    want_items = [[3, 2, 1, 0], [4, 0, 0, 0], [10, 9, 8, 7]]
    ok = items.tolist() == want_items and lengths.tolist() == [3, 1, 4] and \
        items.dtype == torch.long and lengths.dtype == torch.long
    for bad in ([[1], []], [[0]], [[1, 13]]):
        try:
            et.batch(bad, 4, num_items=12)
            ok = False
            print(f"    FAIL: batch accepted {bad}")
        except ValueError:
            pass
    print("    " + ("batch layout as hand-derived; empty history, id 0 and id I+1 rejected"
                    if ok else f"FAIL: items {items.tolist()}, lengths {lengths.tolist()}"))
    return ok


def job_memory_ties(seed: int) -> bool:
    """Spec 3.2 tie rules with exact ties: top-t by the smaller index, the t best
    pairs by the smaller slot x*m + y.  Hand-derived where every score ties, and
    against the reference's memory_read where some do."""
    ok = True
    # top_indices on its own (hand-derived)
    got = et.top_indices(torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 1.0]]), 4).tolist()
    if got != [[1, 2, 4, 0]]:
        ok = False
        print(f"    FAIL: top_indices with ties gave {got}, want [[1, 2, 4, 0]]")
    cfgd = dict(golden.small(mem_subkeys=6, mem_key=8, mem_topk=3, experts=3))
    cfg = ref.Config(**cfgd).resolved()

    def all_tie(sub):      # all sa equal and all sb equal: every pair ties, keep slots 0, 1, 2
        sub[:, :] = sub[:, :1].copy()

    def some_tie(sub):     # sub-key 4 = 1 in both halves, 5 = 2 in the first
        sub[:, 4] = sub[:, 1]
        sub[0, 5] = sub[0, 2]

    boundary_ties = 0  # equal sub-keys of which exactly one is kept: the tie rule decides
    for label, tweak, want in (("all tie", all_tie, [0, 1, 2]), ("some tie", some_tie, None)):
        params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
        sub = params["imr.subkeys"]
        tweak(sub)
        hist = golden.draw_histories(cfg.num_items, [1, 5, 20], seed + 1)
        sd = {n: torch.from_numpy(v.astype(np.float32)) for n, v in params.items()}
        for dname, dtype in DTYPES:
            m = et.from_state_dict(cfgd, sd).to(dtype).eval()
            with torch.no_grad():
                m(*et.batch(hist, cfg.max_len))
            for b, h in enumerate(hist):
                X = ref.embed(cfg, params, h)
                u = ref.norm(X.mean(axis=0), params, "imr.norm", cfg.ln_eps)
                Q = ref.linear(u, params, "imr.query").reshape(cfg.experts, cfg.mem_key)
                for j in range(cfg.experts):
                    slots = ref.memory_read(Q[j], sub, params["imr.values"], cfg.mem_topk)[0]
                    if want is None and dtype == torch.float64:  # count the ties at the cut
                        for half, (x, y) in ((0, (1, 4)), (0, (2, 5)), (1, (1, 4))):
                            half_q = Q[j][half * cfg.mem_key // 2:(half + 1) * cfg.mem_key // 2]
                            top = set(ref.top_indices(half_q @ sub[half].T, cfg.mem_topk).tolist())
                            boundary_ties += (x in top) != (y in top)
                    got = sorted(m.imr.last_slots[b, j].tolist())
                    exp = sorted(want if want is not None else slots.tolist())
                    if got != exp or sorted(slots.tolist()) != exp:
                        ok = False
                        print(f"    FAIL: {label} {dname} user {b} expert {j}: torch slots "
                              f"{got}, reference {slots.tolist()}, want {exp}")
    if boundary_ties == 0:
        ok = False
        print("    FAIL: the 'some tie' draw has no tie at the top-t cut: it tests nothing")
    if ok:
        print("    exact ties in sa, sb and the pair scores: torch keeps the reference's slots "
              f"(fp32 and fp64; {boundary_ties} ties at the cut); all-tie case = slots 0, 1, 2 "
              "as hand-derived")
    return ok


def job_dropout(seed: int) -> bool:
    """Dropout only in train mode (spec 5); p from the config key or the argument."""
    cfg = ref.Config(**TINY).resolved()
    params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
    sd = {n: torch.from_numpy(v.astype(np.float32)) for n, v in params.items()}
    items, lengths = et.batch([[1, 2, 3, 4], [5, 6]], cfg.max_len)
    m = et.from_state_dict(dict(TINY), sd).double()
    ok = abs(m.drop.p - 0.2) < 1e-15 and \
        et.from_state_dict(dict(TINY, dropout=0.3), sd).drop.p == 0.3 and \
        et.from_state_dict(TINY, sd, dropout=0.1).drop.p == 0.1
    torch.manual_seed(seed)
    with torch.no_grad():
        ev = m.eval()(items, lengths)
        ev2 = m(items, lengths)
        tr = m.train()(items, lengths)
        m0 = et.from_state_dict(TINY, sd, dropout=0.0).double().train()
        tr0 = m0(items, lengths)
    ok &= torch.equal(ev, ev2) and not torch.allclose(tr, ev) and torch.equal(tr0, ev)
    print("    " + ("eval is deterministic, train with p=0.2 differs, train with p=0 = eval"
                    if ok else "FAIL: dropout does not behave as spec 5 says"))
    return ok


def job_loss(seed: int) -> bool:
    """loss() = mean over users of logsumexp(scores) - score(target) (spec 5),
    computed here from the reference's float64 scores."""
    ok = True
    for cfgd in (TINY, dict(model="sasrec", num_items=12, max_len=6, hidden=8, heads=2,
                            layers=2)):
        cfg = ref.Config(**cfgd).resolved()
        params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
        hist = golden.draw_histories(cfg.num_items, [1, 3, 6, 9], seed + 1)
        targets = [3, 12, 1, 7]
        s = ref.scores(cfg, params, hist)
        zmax = s.max(axis=1, keepdims=True)
        lse = (zmax + np.log(np.exp(s - zmax).sum(axis=1, keepdims=True)))[:, 0]
        want = float(np.mean(lse - s[np.arange(len(targets)), np.array(targets) - 1]))
        sd = {n: torch.from_numpy(v.astype(np.float32)) for n, v in params.items()}
        items, lengths = et.batch(hist, cfg.max_len)
        for label, dtype in DTYPES:
            m = et.from_state_dict(cfgd, sd).to(dtype).eval()
            got = float(m.loss(items, lengths, torch.tensor(targets)).detach())
            err = abs(got - want) / abs(want)
            tol = 1e-12 if dtype == torch.float64 else TOL_REF
            print(f"    {cfg.model} {label}: loss {got:.10g}, from the reference's scores "
                  f"{want:.10g}, relative error {err:.3g}")
            ok &= err <= tol
    return ok


def job_loss_positions(seed: int) -> bool:
    """loss_positions() (objectives causal and cloze of spec 5) against the
    reference's position_loss: SASRec scored at every position against the
    next item, ELASTIC with a mask token at masked positions."""
    ok = True
    rng = np.random.default_rng(seed)
    for cfgd, objective in ((dict(model="sasrec", num_items=12, max_len=6, hidden=8, heads=2,
                                  layers=2), "causal"),
                            (dict(TINY, mask_token=1), "cloze")):
        cfg = ref.Config(**cfgd).resolved()
        params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
        inputs, targets = [], []
        for n in (1, 4, 6):
            seq = [int(v) for v in rng.integers(1, cfg.num_items + 1, n + 1)]
            if objective == "causal":
                inputs.append(seq[:n])
                targets.append(seq[1:])
            else:
                masked = [i % 2 == 0 for i in range(n)]
                inputs.append([cfg.num_items + 1 if m else v for v, m in zip(seq[:n], masked)])
                targets.append([v if m else 0 for v, m in zip(seq[:n], masked)])
        want = ref.position_loss(cfg, params, inputs, targets)
        n_max = max(len(x) for x in inputs)
        items = torch.zeros(len(inputs), n_max, dtype=torch.long)   # recency order
        tgt = torch.zeros(len(inputs), n_max, dtype=torch.long)
        for b, (x, t) in enumerate(zip(inputs, targets)):
            items[b, :len(x)] = torch.tensor(x[::-1])
            tgt[b, :len(t)] = torch.tensor(t[::-1])
        lengths = torch.tensor([len(x) for x in inputs])
        sd = {n: torch.from_numpy(v.astype(np.float32)) for n, v in params.items()}
        for label, dtype in DTYPES:
            m = et.from_state_dict(cfgd, sd).to(dtype).eval()
            got = float(m.loss_positions(items, lengths, tgt).detach())
            err = abs(got - want) / abs(want)
            tol = 1e-12 if dtype == torch.float64 else TOL_REF
            print(f"    {cfg.model} {objective} {label}: loss {got:.10g}, reference {want:.10g}, "
                  f"relative error {err:.3g}")
            ok &= err <= tol
    return ok


def job_gradcheck(seed: int, entries_per_tensor: int = 2, h: float = 1e-6) -> bool:
    """Float64: autograd gradient of loss() against central differences of the same
    loss on random entries of every parameter tensor of tiny models.  An entry whose
    +-h perturbation changes a memory top-t selection (the loss is not differentiable
    there) is skipped and reported."""
    ok = True
    for cfgd in (TINY, dict(TINY, layers=2, mem_topk=3), dict(
            model="sasrec", num_items=12, max_len=6, hidden=8, heads=2, layers=2)):
        cfg = ref.Config(**cfgd).resolved()
        params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
        sd = {n: torch.from_numpy(v) for n, v in params.items()}      # float64
        m = et.from_state_dict(cfgd, sd).double().eval()
        hist = golden.draw_histories(cfg.num_items, [1, 2, 4, 6, 9], seed + 2)
        items, lengths = et.batch(hist, cfg.max_len)
        targets = torch.tensor([2, 5, 12, 1, 8])
        m.zero_grad()
        m.loss(items, lengths, targets).backward()
        elastic = cfg.model == "elastic"

        def loss_and_slots():
            with torch.no_grad():
                value = float(m.loss(items, lengths, targets))
            return value, (m.imr.last_slots.clone() if elastic else None)

        base_slots = loss_and_slots()[1]
        rng = np.random.default_rng(seed + 3)
        checked = skipped = nonzero = 0
        worst = 0.0
        for name, p in m.named_parameters():
            flat = p.data.view(-1)
            for idx in rng.choice(flat.numel(), min(entries_per_tensor, flat.numel()),
                                  replace=False):
                old = float(flat[idx])
                flat[idx] = old + h
                lp, sp = loss_and_slots()
                flat[idx] = old - h
                lm, sm = loss_and_slots()
                flat[idx] = old
                if elastic and not (torch.equal(sp, base_slots) and torch.equal(sm, base_slots)):
                    skipped += 1
                    print(f"    note: {name}[{idx}]: a +-h step changes a memory selection; "
                          "skipped (finite difference is discontinuous there)")
                    continue
                fd = (lp - lm) / (2 * h)
                ad = float(p.grad.view(-1)[idx])
                err = abs(ad - fd)
                worst = max(worst, err / max(abs(ad), 1e-3))
                checked += 1
                nonzero += abs(ad) > 1e-8
                if err > 1e-8 + 1e-6 * abs(ad):
                    ok = False
                    print(f"    FAIL: {name}[{idx}]: autograd {ad!r}, central difference {fd!r}")
        print(f"    {cfg.model} (L={cfg.layers}"
              + (f", t={cfg.mem_topk}" if elastic else "") + f"): {checked} entries checked "
              f"({nonzero} with a non-zero gradient), {skipped} skipped; largest |autograd - "
              f"FD| / max(|autograd|, 1e-3) = {worst:.3g}")
        ok &= checked >= 20 and nonzero >= checked // 2
    return ok


def job_c_file(lib: Optional[CLib], seed: int) -> bool:
    """A model C draws (spec 5) and saves is loaded by torch and matches the reference."""
    if lib is None:
        print("    skipped: no C library given (--lib or ELASTIC_LIB)")
        return True
    ok = True
    for cfgd in (golden.small(), dict(model="sasrec", num_items=50, max_len=20, hidden=32,
                                      heads=2, layers=2)):
        meta = {k: str(v) for k, v in cfgd.items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "c.safetensors")
            model = lib.init_random(meta, seed)
            try:
                lib.save(model, path)
            finally:
                model.close()
            cfg, params, _ = ref.load_model(path)
            module = et.load(path)
            hist = golden.draw_histories(cfg.num_items, [1, 5, 20, 30], seed + 1)
            want = ref.scores(cfg, params, hist)
            for label, dtype in DTYPES:
                m = copy.deepcopy(module).to(dtype).eval()
                with torch.no_grad():
                    got = as_np(m.scores(m(*et.batch(hist, cfg.max_len))))
                e = float(rel_l2(got, want).max())
                print(f"    {cfg.model} drawn by C (seed {seed}), torch {label}: scores rel L2 "
                      f"{e:.3g}")
                ok &= e <= TOL_REF
    return ok


def job_cli(seed: int) -> bool:
    """`recommend` prints what the reference recommends; `convert` both ways is lossless."""
    cfg = ref.Config(**golden.small()).resolved()
    params = ref.init_params(cfg, seed, 0.5, 0.1, 0.2, 1.5)
    hist = golden.draw_histories(cfg.num_items, [1, 4, 25], seed + 1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        ref.save_model(path, cfg, params, {"item_map": "x"})
        hpath = os.path.join(tmp, "h.txt")
        with open(hpath, "w") as f:
            f.write("\n".join(" ".join(map(str, h)) for h in hist) + "\n")
        out = io.StringIO()
        with redirect_stdout(out):
            rc = et.main(["recommend", path, hpath, "-k", "5"])
        want_ids, _ = ref.recommend(cfg, params, hist, 5)
        for b, line in enumerate(out.getvalue().splitlines()):
            no, _, cells = line.partition("\t")
            ids = [int(c.split(":")[0]) for c in cells.split()]
            if rc != 0 or int(no) != b + 1 or ids != want_ids[b].tolist():
                ok = False
                print(f"    FAIL: recommend line {line!r}, want ids {want_ids[b].tolist()}")
        ckpt = os.path.join(tmp, "m.pt")
        back = os.path.join(tmp, "back.safetensors")
        with redirect_stdout(io.StringIO()):
            et.main(["convert", path, ckpt])
            et.main(["convert", ckpt, back])
        problems: List[str] = []
        compare_state_dicts(et.load(back).state_dict(), et.load(path).state_dict(),
                            "convert file -> checkpoint -> file", problems)
        if et.load(back).file_metadata.get("item_map") != "x":
            problems.append("convert lost the extra metadata")
        for p in problems:
            ok = False
            print(f"    FAIL: {p}")
    if ok:
        print("    recommend = reference's top-5; convert file -> checkpoint -> file bit-identical")
    return ok


def job_bridge(lib: Optional[CLib], seed: int) -> bool:
    """libelastic.torch.to_torch / from_torch: from_torch(to_torch(m)) equals m bit for
    bit (tensors, config, metadata) for both models; to_torch's module matches the
    reference."""
    if lib is None:
        print("    skipped: no C library given (--lib or ELASTIC_LIB)")
        return True
    ok = True
    for cfgd in (golden.small(), dict(model="sasrec", num_items=50, max_len=20, hidden=32,
                                      heads=2, layers=2)):
        m = libelastic.Model.init_random(cfgd, seed)
        m.set_item_ids([f"i{v}" for v in range(1, 51)])
        back = et.from_torch(et.to_torch(m))
        same = back.config == m.config and back.metadata == m.metadata and all(
            np.array_equal(back.tensor(n).view(np.uint32), m.tensor(n).view(np.uint32))
            for n in m.tensor_names)
        module = et.to_torch(m).eval()
        cfg = ref.Config(**{k: v for k, v in m.config.items()}).resolved()
        params = {n: m.tensor(n).astype(np.float64) for n in m.tensor_names}
        hist = golden.draw_histories(50, [1, 5, 20, 30], seed + 1)
        with torch.no_grad():
            got = as_np(module.scores(module(*et.batch(hist, cfg.max_len))))
        e = float(rel_l2(got, ref.scores(cfg, params, hist)).max())
        print(f"    {cfgd['model']}: from_torch(to_torch(m)) bit-identical: {same}; "
              f"to_torch scores vs reference rel L2 {e:.3g}")
        ok &= same and e <= TOL_REF
    return ok


def job_cuda(seed: int) -> bool:
    """The port on CUDA (float32 and float64) against the reference, where torch sees a GPU."""
    if not torch.cuda.is_available():
        print("    skipped: torch sees no CUDA device")
        return True
    ok = True
    for case in (golden.CASES[0], golden.CASES[-2]):
        cfg = ref.Config(**case.config).resolved()
        params = ref.init_params(cfg, seed, case.weight_std, case.bias_std, case.norm_std,
                                 case.linear_gain)
        hist = golden.draw_histories(cfg.num_items, case.lengths, seed + 1)
        want = ref.scores(cfg, params, hist)
        sd = {n: torch.from_numpy(v.astype(np.float32)) for n, v in params.items()}
        for label, dtype in DTYPES:
            m = et.from_state_dict(case.config, sd).to("cuda", dtype).eval()
            with torch.no_grad():
                got = as_np(m.scores(m(*et.batch(hist, cfg.max_len, "cuda"))))
            e = float(rel_l2(got, want).max())
            print(f"    {case.name} on {torch.cuda.get_device_name()}, {label}: scores rel L2 {e:.3g}")
            ok &= e <= TOL_REF
    return ok


# ==========================================================================

def print_table(table: List[Dict]) -> None:
    cols = ["fp32 hu", "fp32 scores", "fp64 hu", "fp64 scores", "fp32 batch", "fp64 batch",
            "C on torch file"]
    print("\nlargest relative L2 error per output and case (torch vs the float64 reference; "
          "'C on torch file': the C library's user vectors on the file torch wrote)")
    print(f"| {'case':22s} | " + " | ".join(f"{c:>15s}" for c in cols) + " | ties |")
    print("|" + "-" * 24 + "|" + "|".join("-" * 17 for _ in cols) + "|------|")
    for row in table:
        cells = [("n/a" if row.get(c) is None else f"{row[c]:.2e}") for c in cols]
        print(f"| {row['case']:22s} | " + " | ".join(f"{c:>15s}" for c in cells)
              + f" | {row['ties']:4d} |")


def main() -> int:
    ap = argparse.ArgumentParser(description="golden tests: the PyTorch port against the reference")
    ap.add_argument("--lib", default=os.environ.get("ELASTIC_LIB"),
                    help="path of libelastic.so (default: $ELASTIC_LIB; without it the C "
                         "checks are skipped)")
    ap.add_argument("--seed", type=int, default=1234, help="base seed; case i uses seed + 10 i")
    ap.add_argument("--case", action="append", help="run only these cases (repeatable)")
    args = ap.parse_args()
    lib = None
    if args.lib:
        try:
            lib = CLib(args.lib)
        except OSError as exc:
            print(f"FAIL: cannot load {args.lib}: {exc}")
            print("0 passed, 1 failed")
            return 1
        print(f"libelastic {lib.version()} from {libelastic.library_path()}")
    else:
        print("note: no C library (--lib or ELASTIC_LIB): the C checks are skipped")
    print(f"torch {torch.__version__}, libelastic.torch from {et.__file__}; base seed {args.seed}")

    table: List[Dict] = []
    s = args.seed
    jobs = [("state_dict_names", job_names), ("batch_layout", job_batch_layout),
            ("memory_ties", lambda: job_memory_ties(s + 507)),
            ("dropout", lambda: job_dropout(s + 501)), ("loss", lambda: job_loss(s + 502)),
            ("loss_positions", lambda: job_loss_positions(s + 509)),
            ("gradcheck", lambda: job_gradcheck(s + 503)),
            ("c_written_file", lambda: job_c_file(lib, s + 504)),
            ("cli", lambda: job_cli(s + 505)), ("bridge", lambda: job_bridge(lib, s + 508)),
            ("cuda", lambda: job_cuda(s + 506))]
    for i, case in enumerate(golden.CASES):
        jobs.append((case.name, lambda c=case, seed=s + 10 * i: run_case(lib, c, seed, table)))
    if args.case:
        unknown = set(args.case) - {name for name, _ in jobs}
        if unknown:
            print(f"FAIL: unknown case(s) {sorted(unknown)}")
            return 1
        jobs = [j for j in jobs if j[0] in args.case]

    passed = failed = 0
    for name, job in jobs:
        if name not in {c.name for c in golden.CASES}:
            print(f"--- {name}")
        try:
            ok = job()
        except Exception:  # noqa: BLE001  a crash fails that job only
            traceback.print_exc(file=sys.stdout)
            ok = False
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        passed += ok
        failed += not ok
    if table:
        print_table(table)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
