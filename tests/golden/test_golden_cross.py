#!/usr/bin/env python3
"""test_golden_cross.py - the golden tests' C side where this Python cannot load
libelastic: a cross build (aarch64, riscv64, big-endian s390x) run under QEMU
(ci/cross.sh), and, as a check of the harness itself, a native build.

For every golden case of test_golden.py (same configurations, seeds, weights
and histories) this host's float64 reference (tools/reference/elastic_ref.py)
draws the model and writes it as a model file with the safetensors package
(an x86-64-written file, little-endian '<f4'); golden_dump (golden_dump.c), run
through the emulator, loads it on the target and prints user vectors and
scores for each CPU variant (best table, scalar float64 reference, materialized
attention, each instruction set the target has); they must match the
reference within test_golden's tolerance (relative L2 per user below 1e-5).
golden_dump also saves the model again on the target: its tensors must hold
exactly the little-endian float32 bytes of the reference's parameters, and
saving that file once more must give the same file byte for byte.

Run: python3 tests/golden/test_golden_cross.py --dump build/tests/golden/golden_dump
     [--emulator "qemu-s390x-static -L /usr/s390x-linux-gnu"] [--case NAME ...]
(without --case: the cases named in ELASTIC_GOLDEN_CASES, comma-separated, else all)
Ends with "N passed, M failed" and exits non-zero on any failure.
"""
import argparse
import json
import os
import shlex
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_golden as tg  # noqa: E402  (cases and comparisons; its library is never loaded)

np = tg.np
ref = tg.ref

VARIANTS = ["best", "reference", "best:materialized", "generic", "neon", "avx2", "avx512"]


def parse_dump(text):
    """{variant: (backend, hu [B, d], scores [B, I])} and the skipped variants."""
    out, skipped, cur = {}, [], None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "skip":
            skipped.append(parts[1])
        elif parts[0] == "variant":
            cur = parts[1]
            out[cur] = (" ".join(parts[2:]), [], [])
        elif parts[0] in ("hu", "scores"):
            out[cur][1 if parts[0] == "hu" else 2].append([float(v) for v in parts[2:]])
    return {k: (b, np.array(h, dtype=np.float32), np.array(s, dtype=np.float32))
            for k, (b, h, s) in out.items()}, skipped


def tensor_bytes(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file, read by hand."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    return {name: (e["dtype"], e["shape"], data[base + e["data_offsets"][0]:
                                                base + e["data_offsets"][1]])
            for name, e in header.items() if name != "__metadata__"}


def check_resave(path, params, problems):
    """The target's file holds the reference's float32, little-endian, exactly."""
    tensors = tensor_bytes(path)
    if set(tensors) != set(params):
        problems.append(f"resaved file has tensors {sorted(tensors)}, expected {sorted(params)}")
        return
    for name, (dtype, shape, raw) in tensors.items():
        want = np.ascontiguousarray(params[name], dtype="<f4")
        if dtype != "F32" or list(shape) != list(want.shape):
            problems.append(f"resaved {name}: {dtype} {shape}, expected F32 {list(want.shape)}")
        elif raw != want.tobytes():
            got = np.frombuffer(raw, dtype="<f4")
            bad = int(np.nonzero(got.view("<u4") != want.reshape(-1).view("<u4"))[0][0])
            problems.append(f"resaved {name}: element {bad} is {got[bad]!r} "
                            f"(bytes {raw[4 * bad:4 * bad + 4].hex()}), expected "
                            f"{want.reshape(-1)[bad]!r}")


def run_case(case, seed, dump, emulator, tmp):
    cfg = ref.Config(**case.config).resolved()
    params = ref.init_params(cfg, seed, case.weight_std, case.bias_std, case.norm_std,
                             case.linear_gain)
    if case.tweak:
        case.tweak(cfg, params)
    histories = tg.draw_histories(cfg.num_items, case.lengths, seed + 1)
    ref_hu = ref.user_vectors(cfg, params, histories)
    ref_scores = ref_hu @ params["item_emb"][1:cfg.num_items + 1].T  # never a mask row

    model = os.path.join(tmp, f"{case.name}.safetensors")
    ref.save_model(model, cfg, params, {"golden_case": case.name, "golden_seed": str(seed)})
    hist = os.path.join(tmp, f"{case.name}.txt")
    with open(hist, "w") as f:
        f.writelines(" ".join(map(str, h)) + "\n" for h in histories)
    resaved, again = model + ".resaved", model + ".again"
    t0 = time.time()
    run = subprocess.run(emulator + [dump, model, hist, "--resave", resaved] + VARIANTS,
                         capture_output=True, text=True, timeout=900)
    problems = []
    if run.returncode != 0:
        problems.append(f"golden_dump exited {run.returncode}: {run.stderr.strip()[-2000:]}")
        return problems, ""
    results, skipped = parse_dump(run.stdout)
    line = f"target {time.time() - t0:.1f}s;"
    for variant, (backend, hu, sc) in results.items():
        if hu.shape != ref_hu.shape or sc.shape != ref_scores.shape:
            problems.append(f"{variant}: shapes {hu.shape} {sc.shape}, expected "
                            f"{ref_hu.shape} {ref_scores.shape}")
            continue
        e_hu, e_sc = tg.rel_l2(hu, ref_hu), tg.rel_l2(sc, ref_scores)
        line += f" {variant} [{backend}] {max(e_hu.max(), e_sc.max()):.2g};"
        for what, e in (("user vector", e_hu), ("scores", e_sc)):
            for b in np.nonzero(e > tg.TOL_REF)[0]:
                problems.append(f"{variant}: {what} of user {b} (length {len(histories[b])}): "
                                f"relative L2 error {e[b]:.3g} > {tg.TOL_REF:g}")
    for v in ("best", "reference", "best:materialized", "generic"):
        if v not in results:
            problems.append(f"variant {v} did not run")
    line += f" not on this CPU: {', '.join(skipped) or 'none'}"
    check_resave(resaved, params, problems)
    run2 = subprocess.run(emulator + [dump, resaved, hist, "--resave", again],
                          capture_output=True, text=True, timeout=900)
    if run2.returncode != 0:
        problems.append(f"second resave failed: {run2.stderr.strip()[-2000:]}")
    else:
        with open(resaved, "rb") as f1, open(again, "rb") as f2:
            if f1.read() != f2.read():
                problems.append("saving the resaved model again changed its bytes")
    return problems, line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True, help="the golden_dump program (of the target)")
    ap.add_argument("--emulator", default="", help="command that runs target programs (QEMU)")
    ap.add_argument("--case", action="append", help="only these cases (default: all)")
    ap.add_argument("--seed", type=int, default=1234, help="base seed; case i uses seed + 10 i "
                    "(as test_golden.py)")
    args = ap.parse_args()
    emulator = shlex.split(args.emulator)
    if not args.case and os.environ.get("ELASTIC_GOLDEN_CASES"):  # ci/cross.sh in CI
        args.case = os.environ["ELASTIC_GOLDEN_CASES"].split(",")
    cases = [c for c in tg.CASES if not args.case or c.name in args.case]
    if args.case and len(cases) != len(args.case):
        print(f"unknown case in {args.case}")
        print("0 passed, 1 failed")
        return 1
    print(f"golden_dump {args.dump}" + (f" under {args.emulator}" if emulator else ""))
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            seed = args.seed + 10 * tg.CASES.index(case)
            try:
                problems, line = run_case(case, seed, args.dump, emulator, tmp)
            except Exception as exc:  # a crash of one case is that case's failure
                problems, line = [f"{type(exc).__name__}: {exc}"], ""
            print(f"--- case {case.name} (seed {seed}): {line}")
            for p in problems[:20]:
                print(f"    FAIL: {p}")
            passed += not problems
            failed += bool(problems)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
