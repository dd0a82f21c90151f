#!/usr/bin/env python3
"""test_golden.py - golden tests: the C library (libelastic.so, through the
Python package python/libelastic, the project's one binding of the public API of
include/elastic.h) against the independent float64
reference tools/reference/elastic_ref.py, on random models from recorded seeds.

For every case the reference draws a model (spec 5 initialisation, or larger
weights so that every layer matters: embeddings and memory values N(0, 0.5^2),
Linear weights N(0, 1.5^2 / fan_in), biases and LayerNorm parameters jittered),
saves it as a model file, and the C library loads it.  (A flat N(0, 0.5^2) for
Linear weights makes attention logits ~50 wide: the model is then so
ill-conditioned that float32 rounding alone moves outputs by ~5e-6; each case
prints the reference's float32 sensitivity to show how far it is from that.)  Then, on the CPU backend, for the default fast path and for
the scalar float64 path (backend option cpu.isa=reference) and for
materialized attention (elastic_session_options.attention = 1):
  - user vectors and scores: relative L2 error per user below 1e-5;
  - top-K (K = 10, history left out): identical ids, except where the
    reference's scores at a differing place are within 1e-5 (relative to the
    row's largest |score|): such ties are printed, not hidden; C's own list
    must be ordered by score with ties by the smaller id;
  - batch against one-by-one: each user run alone equals its batch row
    (relative L2 up to 1e-6).
Each case prints its seed and the largest errors seen.

Run: python3 tests/golden/test_golden.py --lib build/libelastic.so [--case NAME]
     [--seed S] [--all-isas]   (the library path may also come from ELASTIC_LIB)
Ends with a line "N passed, M failed" and exits non-zero on any failure.
If numpy or safetensors cannot be imported the run FAILS (it never skips).
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))

try:
    import numpy as np
    import safetensors  # noqa: F401  (the reference writes model files with it)
    import elastic_ref as ref
except ImportError as exc:  # CI installs them: a missing one is a failure, not a skip
    print(f"FAIL: cannot import the reference's dependencies ({exc}); "
          "install them with: python3 -m pip install numpy safetensors")
    print("0 passed, 1 failed")
    sys.exit(1)

TOL_REF = 1e-5      # C against the float64 reference (relative L2, per user)
TOL_BATCH = 1e-6    # C batch row against the same user run alone
TOL_TIE = 1e-5      # top-K: reference scores closer than this (relative) are a tie

# ==========================================================================
# the library, through the Python package (python/libelastic: the one binding)
# ==========================================================================

sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import libelastic  # noqa: E402

MODEL_KINDS = {"elastic": 0, "sasrec": 1}
CError = libelastic.ElasticError   # a call that returned a status other than ELASTIC_OK


class Lib:
    """The calls the golden tests make, on libelastic's Python package."""

    def __init__(self, path: str):
        libelastic.load_library(path)   # OSError when it cannot be loaded

    @staticmethod
    def version() -> str:
        return libelastic.version()

    # ------------------------------------------------------------ config
    @staticmethod
    def config_from_strings(meta: Dict[str, str]) -> Dict[str, object]:
        """elastic_config_default + elastic_config_set per key + validate."""
        return libelastic.validate_config({k: meta[k] for k in ref.CONFIG_KEYS if k in meta})

    # ------------------------------------------------------------ model and session
    @staticmethod
    def load_model(path: str) -> "libelastic.Model":
        return libelastic.Model.load(path)

    @staticmethod
    def model_config(model: "libelastic.Model") -> Dict[str, object]:
        return model.config

    @staticmethod
    def session(model, cpu_reference: int = 0, cpu_isa: int = 0, attention: int = 0):
        isa = "reference" if cpu_reference else ("best", "generic", "avx2", "avx512")[cpu_isa]
        return libelastic.Session(model, backend="cpu", backend_options=f"cpu.isa={isa}",
                                  attention="materialized" if attention else "streaming")

    # ------------------------------------------------------------ runs
    @staticmethod
    def user_vectors(session, histories, d: int) -> np.ndarray:
        out = session.user_vectors(histories)
        assert out.shape == (len(histories), d) and out.dtype == np.float32
        return out

    @staticmethod
    def scores(session, histories, num_items: int) -> np.ndarray:
        out = session.scores(histories)
        assert out.shape == (len(histories), num_items) and out.dtype == np.float32
        return out

    @staticmethod
    def recommend(session, histories, k: int, exclude: bool):
        return session.recommend(histories, k, exclude_history=exclude)


# ==========================================================================
# comparisons
# ==========================================================================

def rel_l2(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per-row ||got - want|| / ||want|| (rows of the last axis)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    num = np.linalg.norm(got - want, axis=-1)
    den = np.maximum(np.linalg.norm(want, axis=-1), 1e-300)
    return num / den


def check_topk(c_ids: np.ndarray, c_scores: np.ndarray, ref_row: np.ndarray,
               history: Sequence[int], k: int, exclude: bool, report: List[str],
               notes: List[str], where: str) -> None:
    """Compares one user's C top-K with the reference's scores (see the file docstring)."""
    want_ids, want_sc = ref.top_k(ref_row, k, history, exclude)
    excluded = set(history) if exclude else set()
    tol = TOL_TIE * float(np.max(np.abs(ref_row)))
    c_ids = [int(v) for v in c_ids]
    real = [v for v in c_ids if v != 0]
    if len(set(real)) != len(real):
        report.append(f"{where}: duplicate ids in {c_ids}")
    n_want = int(np.sum(want_ids != 0))
    if len(real) != n_want or any(v != 0 for v in c_ids[n_want:]):
        report.append(f"{where}: {len(real)} ids (want {n_want} then id 0): {c_ids}")
        return
    if not np.all(np.isneginf(c_scores[n_want:])):
        report.append(f"{where}: padding scores are not -inf: {c_scores[n_want:]}")
    for j in range(n_want):
        v = c_ids[j]
        if not 1 <= v <= len(ref_row) or v in excluded:
            report.append(f"{where}: place {j + 1}: id {v} is out of range or in the history")
            return
        # C's list is ordered by its own scores, equal scores by the smaller id
        if j > 0:
            prev_s, s = float(c_scores[j - 1]), float(c_scores[j])
            if s > prev_s or (s == prev_s and v < c_ids[j - 1]):
                report.append(f"{where}: C's list is out of order at place {j + 1}: "
                              f"({c_ids[j - 1]}, {prev_s!r}) before ({v}, {s!r})")
        # C's score of the item it returned, against the reference
        if abs(float(c_scores[j]) - ref_row[v - 1]) > TOL_REF * float(np.max(np.abs(ref_row))):
            report.append(f"{where}: place {j + 1}: C's score of item {v} is {c_scores[j]!r}, "
                          f"the reference's {ref_row[v - 1]!r}")
        if v != want_ids[j]:
            gap = abs(ref_row[v - 1] - want_sc[j])
            if gap <= tol:
                notes.append(f"{where}: tie at place {j + 1}: C item {v}, reference item "
                             f"{int(want_ids[j])}, reference scores differ by {gap:.3g} "
                             f"(<= {tol:.3g})")
            else:
                report.append(f"{where}: place {j + 1}: C item {v} (reference score "
                              f"{ref_row[v - 1]!r}), reference item {int(want_ids[j])} "
                              f"(score {want_sc[j]!r}); gap {gap:.3g} > {tol:.3g}")


# ==========================================================================
# cases
# ==========================================================================

@dataclasses.dataclass
class Case:
    name: str
    config: Dict[str, object]
    lengths: Sequence[int]             # history lengths, one per user of the batch
    weight_std: float = 0.5            # init: embeddings, memory values (and Linear weights
                                       # when linear_gain is None)
    linear_gain: Optional[float] = 1.5  # init: Linear weights ~ N(0, gain^2 / fan_in)
    bias_std: float = 0.1              # init: Linear biases
    norm_std: float = 0.2              # init: LayerNorm weight jitter and bias
    top_k: int = 10
    tweak: Optional[Callable[[ref.Config, Dict[str, np.ndarray]], None]] = None
    also_keep_history: bool = False    # also recommend with exclude_history = 0


def small(**kw):
    """The default-ish small configuration, with overrides."""
    base = dict(model="elastic", num_items=50, max_len=20, hidden=32, heads=2, layers=2,
                experts=4, mem_subkeys=8, mem_key=32, mem_topk=4)
    base.update(kw)
    return base


MIXED = [1, 2, 3, 7, 19, 20, 21, 40, 60]   # around N = 20


def tie_rows(cfg, params):
    """Exact ties: items 9 and 30 copy item 2; 5 copies 4; items 40..42 are zero."""
    emb = params["item_emb"]
    emb[9] = emb[2]
    emb[30] = emb[2]
    emb[5] = emb[4]
    emb[40:43] = 0.0


def ragged_lengths(n_max: int, count: int, seed: int) -> List[int]:
    rng = np.random.default_rng(seed)
    return [1, n_max] + [int(x) for x in rng.integers(1, n_max + 1, count - 2)]


CASES = [
    Case("small", small(), MIXED, also_keep_history=True),
    Case("small_spec5_init", small(), MIXED, weight_std=0.02, linear_gain=None, bias_std=0.0,
         norm_std=0.0),
    Case("experts1", small(experts=1), MIXED),
    Case("heads1", small(heads=1), MIXED),
    Case("d12_h3_c6", small(hidden=12, heads=3, mem_key=6), MIXED),
    Case("m2_t1", small(mem_subkeys=2, mem_topk=1), MIXED),
    Case("m2_t2", small(mem_subkeys=2, mem_topk=2), MIXED),
    Case("t1", small(mem_topk=1), MIXED),
    Case("t_eq_m", small(mem_topk=8), MIXED),
    Case("layers1", small(layers=1), MIXED),
    Case("layers4", small(layers=4), MIXED),
    Case("length1", small(), [1] * 6),
    Case("longer_than_max_len", small(), [21, 25, 40, 60, 100]),
    Case("max_len1", small(max_len=1), [1, 2, 5]),
    Case("ragged", small(), ragged_lengths(60, 16, 7)),
    Case("ties_full_ranking", small(), [1, 3, 20, 45], top_k=50, tweak=tie_rows),
    Case("sasrec_layers1", dict(model="sasrec", num_items=50, max_len=20, hidden=32, heads=2,
                                layers=1), MIXED),
    Case("sasrec_layers2", dict(model="sasrec", num_items=50, max_len=20, hidden=32, heads=2,
                                layers=2), ragged_lengths(60, 12, 8), also_keep_history=True),
    Case("sasrec_d12_h3", dict(model="sasrec", num_items=40, max_len=10, hidden=12, heads=3,
                               layers=2), [1, 2, 9, 10, 11, 30]),
    # spec 3.0: the mask id I+1 at recency 0, the history after it (N-1 items read)
    Case("mask_token", small(mask_token=1), MIXED, also_keep_history=True),
    Case("mask_token_max_len1", small(mask_token=1, max_len=1), [1, 2, 5]),
    Case("sasrec_mask_token", dict(model="sasrec", num_items=50, max_len=20, hidden=32, heads=2,
                                   layers=2, mask_token=1), MIXED),
]

# (label, cpu_reference, cpu_isa, attention): attention 1 = ELASTIC_ATTENTION_MATERIALIZED,
# the softmax weights held as a tensor (two ops) instead of streamed
VARIANTS = [("fast", 0, 0, 0), ("cpu_reference", 1, 0, 0), ("materialized", 0, 0, 1)]
EXTRA_ISAS = [("isa_generic", 0, 1, 0), ("isa_avx2", 0, 2, 0), ("isa_avx512", 0, 3, 0)]


def draw_histories(num_items: int, lengths: Sequence[int], seed: int) -> List[List[int]]:
    """Random histories (ids 1..I, repeats allowed), one per length."""
    rng = np.random.default_rng(seed)
    return [[int(v) for v in rng.integers(1, num_items + 1, n)] for n in lengths]


def float32_sensitivity(cfg, params, histories, ref_scores, seed: int, trials: int = 3) -> float:
    """How far the reference's scores move (largest relative L2 per user) when
    every parameter and every LayerNorm / GELU output is perturbed by relative
    noise of float32 size (6e-8): a lower bound on what an exact float32
    implementation may differ by.  Printed per case to tell an ill-conditioned
    draw from a library bug."""
    rng = np.random.default_rng(seed + 7)
    noise = lambda a: a * (1.0 + rng.uniform(-6e-8, 6e-8, np.shape(a)))  # noqa: E731
    gelu, layer_norm = ref.gelu, ref.layer_norm
    worst = 0.0
    try:
        ref.gelu = lambda z: noise(gelu(z))
        ref.layer_norm = lambda z, w, b, e: noise(layer_norm(z, w, b, e))
        for _ in range(trials):
            noisy = {name: noise(v) for name, v in params.items()}
            worst = max(worst, float(rel_l2(ref.scores(cfg, noisy, histories), ref_scores).max()))
    finally:
        ref.gelu, ref.layer_norm = gelu, layer_norm
    return worst


def check_config(lib: Lib, cfg: ref.Config, model) -> List[str]:
    """The config C read from the file, and one C builds from the same strings,
    equal the reference's."""
    problems = []
    meta = cfg.to_metadata()
    for label, c in (("model file", lib.model_config(model)),
                     ("config_set", lib.config_from_strings(meta))):
        if c["model"] != cfg.model:
            problems.append(f"{label}: model {c['model']}")
        keys = [k for k in ref.INT_KEYS if not (cfg.model == "sasrec" and k in ref.MEMORY_KEYS)]
        for key in keys:
            if c[key] != getattr(cfg, key):
                problems.append(f"{label}: {key} = {c[key]}, want {getattr(cfg, key)}")
        if c["ln_eps"] != cfg.ln_eps:
            problems.append(f"{label}: ln_eps = {c['ln_eps']!r}, want {cfg.ln_eps!r}")
        if c.get("mask_token", 0) != cfg.mask_token:
            problems.append(f"{label}: mask_token = {c.get('mask_token')}, want {cfg.mask_token}")
    return problems


def run_variant(lib, model, cfg, params, histories, case, variant, ref_hu, ref_scores,
                problems, notes) -> Optional[Dict[str, float]]:
    """One session kind on one case: returns the largest errors (None if unavailable)."""
    label, cpu_reference, cpu_isa, attention = variant
    try:
        session = lib.session(model, cpu_reference, cpu_isa, attention)
    except CError as exc:
        if variant in EXTRA_ISAS:  # an instruction set this CPU lacks
            notes.append(f"{label}: not available ({exc})")
            return None
        raise
    try:
        backend = session.backend
        d, I, K = cfg.hidden, cfg.num_items, case.top_k
        hu = lib.user_vectors(session, histories, d)
        sc = lib.scores(session, histories, I)
        err = {"backend": backend,
               "hu": float(rel_l2(hu, ref_hu).max()),
               "scores": float(rel_l2(sc, ref_scores).max())}
        for what, e in (("user vector", rel_l2(hu, ref_hu)), ("scores", rel_l2(sc, ref_scores))):
            for b in np.nonzero(e > TOL_REF)[0]:
                problems.append(f"{label}: {what} of user {b} (length {len(histories[b])}): "
                                f"relative L2 error {e[b]:.3g} > {TOL_REF:g}")
        # batch against each user alone
        worst = 0.0
        for b, h in enumerate(histories):
            hu1 = lib.user_vectors(session, [h], d)
            sc1 = lib.scores(session, [h], I)
            e = max(rel_l2(hu1[0], hu[b]), rel_l2(sc1[0], sc[b]))
            worst = max(worst, float(e))
            if e > TOL_BATCH:
                problems.append(f"{label}: user {b} alone differs from its batch row by "
                                f"{e:.3g} > {TOL_BATCH:g}")
        err["batch"] = worst
        # top-K, history left out (and kept, where the case asks)
        for exclude in ([True, False] if case.also_keep_history else [True]):
            ids, vals = lib.recommend(session, histories, K, exclude)
            for b, h in enumerate(histories):
                check_topk(ids[b], vals[b], ref_scores[b], h, K, exclude, problems, notes,
                           f"{label}: top-{K} (exclude={int(exclude)}) user {b}")
            # one user alone gives the same list
            ids1, _ = lib.recommend(session, histories[-1:], K, exclude)
            if not np.array_equal(ids1[0], ids[-1]):
                problems.append(f"{label}: top-{K} of the last user alone {ids1[0].tolist()} "
                                f"!= in the batch {ids[-1].tolist()}")
        return err
    finally:
        session.close()


def run_case(lib: Lib, case: Case, seed: int, variants) -> bool:
    cfg = ref.Config(**case.config).resolved()
    params = ref.init_params(cfg, seed, case.weight_std, case.bias_std, case.norm_std,
                             case.linear_gain)
    if case.tweak:
        case.tweak(cfg, params)
    histories = draw_histories(cfg.num_items, case.lengths, seed + 1)
    print(f"--- case {case.name} (seed {seed}): model={cfg.model} I={cfg.num_items} "
          f"N={cfg.max_len} d={cfg.hidden} h={cfg.heads} L={cfg.layers}"
          + (f" k={cfg.experts} m={cfg.mem_subkeys} c={cfg.mem_key} t={cfg.mem_topk}"
             if cfg.model == "elastic" else "")
          + f" f={cfg.ffn}; embeddings N(0, {case.weight_std}^2), Linear weights "
          + (f"N(0, {case.linear_gain}^2/fan_in)" if case.linear_gain else
             f"N(0, {case.weight_std}^2)") + f"; lengths {list(case.lengths)}")
    t0 = time.time()
    ref_hu = ref.user_vectors(cfg, params, histories)
    ref_scores = ref_hu @ params["item_emb"][1:cfg.num_items + 1].T  # never the mask row
    sens = float32_sensitivity(cfg, params, histories, ref_scores, seed)
    line = (f"    reference: {time.time() - t0:.2f}s; float32 sensitivity of the scores "
            f"{sens:.2g}")
    if cfg.model == "elastic":
        margin = min(ref.imr_margin(cfg, params, h) for h in histories)
        line += f"; smallest memory top-t margin {margin:.3g}"
    print(line)
    if sens > TOL_REF / 10:
        print(f"    note: this draw is ill-conditioned (sensitivity {sens:.2g} > {TOL_REF / 10:g}):"
              " float32 rounding alone may come near the tolerance")
    problems: List[str] = []
    notes: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{case.name}.safetensors")
        ref.save_model(path, cfg, params, {"golden_case": case.name, "golden_seed": str(seed)})
        model = lib.load_model(path)
        try:
            problems += check_config(lib, cfg, model)
            for variant in variants:
                err = run_variant(lib, model, cfg, params, histories, case, variant, ref_hu,
                                  ref_scores, problems, notes)
                if err:
                    print(f"    {variant[0]:14s} [{err['backend']}]: user vector rel L2 "
                          f"{err['hu']:.3g}, scores rel L2 {err['scores']:.3g}, "
                          f"batch vs alone {err['batch']:.3g}")
        finally:
            model.close()
    for n in notes:
        print(f"    note: {n}")
    for p in problems[:40]:
        print(f"    FAIL: {p}")
    if len(problems) > 40:
        print(f"    ... and {len(problems) - 40} more")
    return not problems


# -------------------------------------------------------------------- API-level cases

def run_config_case(lib: Lib) -> bool:
    """C's elastic_config_validate and the reference agree on what is valid,
    and name the same key."""
    print("--- case config_validation")
    bad = [(dict(num_items=0), "num_items"), (dict(hidden=10, heads=3), "heads"),
           (dict(mem_key=5), "mem_key"), (dict(mem_subkeys=4, mem_topk=5), "mem_topk"),
           (dict(layers=0), "layers"), (dict(experts=0), "experts"), (dict(max_len=0), "max_len")]
    ok = True
    for kw, key in bad:
        try:
            ref.Config(**{"num_items": 10, **kw}).resolved()
            ok = False
            print(f"    FAIL: the reference accepts {kw}")
        except ValueError:
            pass
        meta = {"num_items": "10", **{k: str(v) for k, v in kw.items()}}
        try:
            lib.config_from_strings(meta)
            ok = False
            print(f"    FAIL: C accepts {kw}")
        except CError as exc:
            if f"'{key}'" not in str(exc):
                ok = False
                print(f"    FAIL: C's message for {kw} does not name '{key}': {exc}")
    # valid: defaults resolve the same way (ffn = 4d, mem_key = d)
    c = lib.config_from_strings({"num_items": "10", "hidden": "24"})
    r = ref.Config(num_items=10, hidden=24).resolved()
    for key in ref.INT_KEYS:
        if c[key] != getattr(r, key):
            ok = False
            print(f"    FAIL: default {key}: C {c[key]}, reference {getattr(r, key)}")
    if ok:
        print(f"    {len(bad)} invalid configs rejected by both, naming the key; defaults agree")
    return ok


def run_errors_case(lib: Lib, seed: int, variant) -> bool:
    """Histories the reference rejects (empty, id 0, id I+1) are errors in C too."""
    print(f"--- case bad_histories (seed {seed})")
    cfg = ref.Config(**small()).resolved()
    params = ref.init_params(cfg, seed)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        ref.save_model(path, cfg, params)
        model = lib.load_model(path)
        session = lib.session(model, variant[1], variant[2], variant[3])
        try:
            for hists, status in (([[1, 2], []], 3), ([[0]], 2), ([[1, 51]], 2)):
                try:
                    ref.user_vectors(cfg, params, hists)
                    ok = False
                    print(f"    FAIL: the reference accepts {hists}")
                except ValueError:
                    pass
                try:
                    lib.user_vectors(session, hists, cfg.hidden)
                    ok = False
                    print(f"    FAIL: C accepts {hists}")
                except CError as exc:
                    if exc.status != status:
                        ok = False
                        print(f"    FAIL: {hists}: {exc} (want status {status})")
            # the session still works after an error
            hu = lib.user_vectors(session, [[1, 2, 3]], cfg.hidden)
            e = rel_l2(hu[0], ref.user_vector(cfg, params, [1, 2, 3]))
            if e > TOL_REF:
                ok = False
                print(f"    FAIL: after the errors, user vector error {e:.3g}")
        finally:
            session.close()
            model.close()
    if ok:
        print("    empty history, id 0 and id I+1 rejected by both")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description="golden tests: libelastic against the reference")
    ap.add_argument("--lib", default=os.environ.get("ELASTIC_LIB"),
                    help="path of libelastic.so (default: $ELASTIC_LIB)")
    ap.add_argument("--seed", type=int, default=1234, help="base seed; case i uses seed + 10 i")
    ap.add_argument("--case", action="append", help="run only these cases (repeatable)")
    ap.add_argument("--all-isas", action="store_true",
                    help="also run each CPU instruction set (generic, avx2, avx512)")
    ap.add_argument("--variants", default=None,
                    help="comma list of session kinds to run (default: fast,cpu_reference,"
                         "materialized; "
                         "also isa_generic, isa_avx2, isa_avx512)")
    args = ap.parse_args()
    if not args.lib:
        print("FAIL: no library: pass --lib path/to/libelastic.so or set ELASTIC_LIB")
        print("0 passed, 1 failed")
        return 1
    # libgomp reads this when the library loads: without it, idle OpenMP threads
    # spin between calls and slow the Python reference down many times over.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        lib = Lib(args.lib)
    except OSError as exc:
        print(f"FAIL: cannot load {args.lib}: {exc}")
        print("0 passed, 1 failed")
        return 1
    print(f"libelastic {lib.version()} from {libelastic.library_path()}")
    variants = VARIANTS + (EXTRA_ISAS if args.all_isas else [])
    if args.variants:
        known = {v[0]: v for v in VARIANTS + EXTRA_ISAS}
        names = args.variants.split(",")
        if any(n not in known for n in names):
            print(f"FAIL: unknown variant in {names}; known: {sorted(known)}")
            return 1
        variants = [known[n] for n in names]

    jobs = [("config_validation", lambda: run_config_case(lib)),
            ("bad_histories", lambda: run_errors_case(lib, args.seed + 999, variants[0]))]
    for i, case in enumerate(CASES):
        jobs.append((case.name, lambda c=case, s=args.seed + 10 * i: run_case(lib, c, s, variants)))
    if args.case:
        unknown = set(args.case) - {name for name, _ in jobs}
        if unknown:
            print(f"FAIL: unknown case(s) {sorted(unknown)}")
            return 1
        jobs = [j for j in jobs if j[0] in args.case]

    passed = failed = 0
    for name, job in jobs:
        try:
            ok = job()
        except Exception:  # noqa: BLE001  a crash of one case fails that case only
            traceback.print_exc(file=sys.stdout)
            ok = False
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
