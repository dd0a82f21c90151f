#!/usr/bin/env python3
"""test_grad_model.py - whole-model gradient check of the C trainer.

For small random ELASTIC and SASRec models (seeds printed), the C library's
elastic_trainer_gradient (forward, softmax cross-entropy of spec section 5,
autodiff backward on the CPU backend, no dropout) is compared with the
independent NumPy float64 reference:
  - the loss against the reference's loss (mean over the batch of
    logsumexp(scores) - score[target]): relative error below 1e-5;
  - gradient entries against central finite differences of the reference's
    loss in float64 (h = 1e-4, and 2e-4 to detect a step in the loss, which
    happens when a perturbation flips a top-t memory selection: such entries
    are reported and skipped). For every parameter tensor a few random
    entries and the entries with the largest C gradient are checked, with
    |g_C - g_FD| <= 1e-4 |g_FD| + 1e-6 max|g_C| (float32 gradients).
Also: entries the loss cannot depend on (the padding row, memory values no
expert selected) must have an exactly zero C gradient.

The position objectives of spec 5 the same way, through
elastic_trainer_gradient_positions against the reference's position_loss:
`causal` (SASRec: every position against the next item) and `cloze` (models
with a mask token, mask_token = 1: random positions replaced by the mask id
I+1, scored against the items they hide; the reference runs every position
through the whole model, the C trainer gathers the scored positions first).

Run: python3 tests/golden/test_grad_model.py --lib build/libelastic.so
"""
import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_golden as tg  # noqa: E402  (the library through the package, the reference)

np, ref, libelastic = tg.np, tg.ref, tg.libelastic


def c_gradient(lib, path, histories, targets, positions=False):
    """Loss, gradient (flat float32) and tensor names from the C trainer, through
    the Python package (libelastic.Trainer: elastic_trainer_gradient, or
    elastic_trainer_gradient_positions with positions=True)."""
    model = lib.load_model(path)
    try:
        with libelastic.Trainer(model, dropout=0.0, backend="cpu") as tr:
            if positions:
                loss, grad = tr.gradient_positions(histories, targets)
            else:
                loss, grad = tr.gradient(histories, targets)
        return loss, grad, model.tensor_names
    finally:
        model.close()


def position_batch(cfg, rng, lengths, objective):
    """Inputs and per-position targets of a batch for `causal` or `cloze`."""
    I = cfg.num_items
    inputs, targets = [], []
    for n in lengths:
        seq = [int(v) for v in rng.integers(1, I + 1, n + 1)]
        if objective == "causal":  # every position against the item after it
            inputs.append(seq[:n])
            targets.append(seq[1:])
        else:  # cloze: about a third masked, at least one; the mask is I+1
            x = seq[:n]
            masked = rng.random(n) < 0.35
            if not masked.any():
                masked[rng.integers(0, n)] = True
            inputs.append([I + 1 if m else v for v, m in zip(x, masked)])
            targets.append([v if m else 0 for v, m in zip(x, masked)])
    return inputs, targets


def ref_loss(cfg, params, histories, targets):
    s = ref.scores(cfg, params, histories)  # [B, I], float64
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return float(np.mean(lse - s[np.arange(len(targets)), np.asarray(targets) - 1]))


def run_case(lib, name, overrides, lengths, seed, entries_per_tensor=3, objective="prefix",
             top_entries=2):
    cfg = ref.Config(**overrides).resolved()
    params = {k: v.astype(np.float64) for k, v in
              ref.init_params(cfg, seed, weight_std=0.5, bias_std=0.1, norm_std=0.1,
                              linear_gain=1.0).items()}
    rng = np.random.default_rng(seed + 1)
    if objective == "prefix":
        histories = [[int(v) for v in rng.integers(1, cfg.num_items + 1, n)] for n in lengths]
        targets = [int(v) for v in rng.integers(1, cfg.num_items + 1, len(lengths))]
        loss_fn = ref_loss
    else:
        histories, targets = position_batch(cfg, rng, lengths, objective)
        loss_fn = ref.position_loss
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        ref.save_model(path, cfg, {k: v.astype(np.float32) for k, v in params.items()})
        loss_c, grad, names = c_gradient(lib, path, histories, targets, objective != "prefix")

    loss_r = loss_fn(cfg, params, histories, targets)
    ok = abs(loss_c - loss_r) <= 1e-5 * abs(loss_r)
    print(f"  {name} ({objective}): seed {seed}, loss C {loss_c:.8f} ref {loss_r:.8f} "
          f"(rel {abs(loss_c - loss_r) / abs(loss_r):.1e})")

    shapes = ref.param_shapes(cfg)
    grads, off = {}, 0
    for n in names:
        size = int(np.prod(shapes[n]))
        grads[n] = grad[off:off + size].reshape(shapes[n]).astype(np.float64)
        off += size
    gmax = max(float(np.abs(g).max()) for g in grads.values())
    if np.any(grads["item_emb"][0] != 0):
        print("  FAIL: the padding row of item_emb has a non-zero gradient")
        ok = False

    def loss_at(pname, idx, delta):
        old = params[pname][idx]
        params[pname][idx] = old + delta
        try:
            return loss_fn(cfg, params, histories, targets)
        finally:
            params[pname][idx] = old

    worst, checked, skipped = 0.0, 0, 0
    for pname in names:
        g = grads[pname]
        flat = np.abs(g).ravel()
        picks = set(int(i) for i in rng.integers(0, flat.size, entries_per_tensor))
        picks |= set(int(i) for i in np.argsort(-flat)[:top_entries])
        if pname == "item_emb" and cfg.mask_token:  # the mask's row I+1 (spec 3.0)
            picks |= {(cfg.num_items + 1) * g.shape[1], (cfg.num_items + 1) * g.shape[1] + 1}
        for i in sorted(picks):
            idx = np.unravel_index(i, g.shape)
            if pname == "item_emb" and idx[0] == 0:
                continue  # padding row: stays zero by definition
            h = 1e-4
            fd1 = (loss_at(pname, idx, h) - loss_at(pname, idx, -h)) / (2 * h)
            fd2 = (loss_at(pname, idx, 2 * h) - loss_at(pname, idx, -2 * h)) / (4 * h)
            if abs(fd1 - fd2) > 1e-4 * max(abs(fd1), 1e-3 * gmax):
                skipped += 1
                print(f"    skip {pname}{list(idx)}: the loss steps here "
                      f"(FD {fd1:.3e} vs {fd2:.3e}; a top-t selection flips)")
                continue
            err = abs(g[idx] - fd1)
            tol = 1e-4 * abs(fd1) + 1e-6 * gmax
            worst = max(worst, err / tol)
            checked += 1
            if err > tol:
                ok = False
                print(f"    FAIL {pname}{list(idx)}: C {g[idx]:.6e}, FD {fd1:.6e}")
    print(f"    {checked} entries checked, {skipped} skipped, worst error {worst:.2f} of tolerance, "
          f"max|g| {gmax:.2e}")

    if cfg.model == "elastic":  # values no expert selected get exactly zero
        hit = np.abs(grads["imr.values"]).sum(axis=1) > 0
        if hit.all():
            print("    note: every memory value was selected")
        zero = int((~hit).sum())
        print(f"    {zero} of {hit.size} memory values unselected (zero gradient)")
    return ok


CASES = [
    ("elastic_small", dict(model="elastic", num_items=30, max_len=12, hidden=16, heads=2,
                           layers=2, experts=4, ffn=32, mem_subkeys=8, mem_key=8, mem_topk=3),
     [1, 5, 12, 20, 3]),
    ("elastic_t1_h1_L1", dict(model="elastic", num_items=20, max_len=8, hidden=8, heads=1,
                              layers=1, experts=2, ffn=16, mem_subkeys=4, mem_key=4, mem_topk=1),
     [2, 8, 9]),
    ("elastic_d12_h3_k1", dict(model="elastic", num_items=25, max_len=10, hidden=12, heads=3,
                               layers=2, experts=1, ffn=20, mem_subkeys=3, mem_key=6, mem_topk=2),
     [1, 4, 10, 15]),
    ("sasrec_L2", dict(model="sasrec", num_items=30, max_len=12, hidden=16, heads=2, layers=2,
                       ffn=32), [1, 6, 12, 17]),
    ("sasrec_h3_L1", dict(model="sasrec", num_items=20, max_len=6, hidden=12, heads=3, layers=1,
                          ffn=24), [1, 3, 7]),
]

# (name, config, sequence lengths (each at most max_len), objective)
POSITION_CASES = [
    ("sasrec_causal", dict(model="sasrec", num_items=30, max_len=12, hidden=16, heads=2,
                           layers=2, ffn=32), [1, 6, 12, 9], "causal"),
    ("sasrec_causal_h3_L1", dict(model="sasrec", num_items=20, max_len=6, hidden=12, heads=3,
                                 layers=1, ffn=24), [2, 6, 3], "causal"),
    ("elastic_cloze", dict(model="elastic", num_items=30, max_len=12, hidden=16, heads=2,
                           layers=2, experts=4, ffn=32, mem_subkeys=8, mem_key=8, mem_topk=3,
                           mask_token=1), [1, 5, 12, 8], "cloze"),
    ("elastic_cloze_t1_L1", dict(model="elastic", num_items=20, max_len=8, hidden=8, heads=1,
                                 layers=1, experts=2, ffn=16, mem_subkeys=4, mem_key=4,
                                 mem_topk=1, mask_token=1), [2, 8, 3], "cloze"),
    ("sasrec_cloze", dict(model="sasrec", num_items=25, max_len=10, hidden=12, heads=2, layers=2,
                          ffn=24, mask_token=1), [3, 10, 1], "cloze"),
    ("elastic_prefix_mask_token", dict(model="elastic", num_items=25, max_len=10, hidden=12,
                                       heads=2, layers=1, experts=2, ffn=20, mem_subkeys=4,
                                       mem_key=6, mem_topk=2, mask_token=1), [1, 9, 10, 14],
     "prefix"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.environ.get("ELASTIC_LIB", "build/libelastic.so"))
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true",
                    help="finite differences on each tensor's largest gradient entry only (the "
                         "sanitized build: the C side runs whole, the float64 side is checked "
                         "in full by the normal build)")
    args = ap.parse_args()
    lib = tg.Lib(args.lib)
    passed = failed = 0
    cases = [(name, cfg, lengths, "prefix") for name, cfg, lengths in CASES] + POSITION_CASES
    for i, (name, cfg, lengths, objective) in enumerate(cases):
        ok = run_case(lib, name, cfg, lengths, args.seed + 17 * i, objective=objective,
                      **(dict(entries_per_tensor=0, top_entries=1) if args.quick else {}))
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
