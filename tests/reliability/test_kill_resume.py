#!/usr/bin/env python3
"""test_kill_resume.py - a training run killed with SIGKILL resumes from the
last complete checkpoint (docs/reliability.md).

`elastic train --checkpoint` writes MODEL.ckpt.next, MODEL.ckpt.state, then
renames the first to MODEL.ckpt (tools/cmd_train.c). This test
  1. rebuilds the two windows where a kill leaves the files apart, from real
     checkpoints of epochs 1 and 2:
       - killed after MODEL.ckpt.next was written, before the state: the pair
         of epoch 1 plus a stray .next of epoch 2 -> --resume continues from
         epoch 1 and ignores .next;
       - killed between the state's rename and the model's: MODEL.ckpt of
         epoch 1, the state and .next of epoch 2 -> --resume completes the
         checkpoint of epoch 2 and continues from there;
  2. kills real runs with SIGKILL at random moments, ROUNDS times; each time
     --resume must start (the files form one checkpoint) and the epoch it
     resumes from must be the last one whose checkpoint was complete.
Usage: test_kill_resume.py --elastic build/elastic [--rounds N]
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MODEL = ["hidden=16", "layers=1", "experts=2", "mem_subkeys=4", "mem_topk=2", "max_len=20"]


def train(elastic, data, out, epochs, resume, extra=()):
    cmd = [elastic, "train", "--data", data, "-o", out, "--checkpoint", "--quiet",
           "--epochs", str(epochs), "--patience", "1000", "--threads", "1",
           "--eval-users", "20", "--samples-per-user", "2", "--seed", "3", *MODEL, *extra]
    if resume:
        cmd.append("--resume")
    return cmd


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def epochs_run(text):
    return [int(n) for n in re.findall(r"^epoch (\d+):", text, re.M)]


def fail(msg, text=""):
    print("FAIL:", msg)
    if text:
        print(text[-3000:])
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elastic", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    random.seed(a.seed)
    d = tempfile.mkdtemp(prefix="elastic-kill-")
    try:
        data = os.path.join(d, "data.txt")
        rc, text = run([a.elastic, "synth", "--users", "200", "--items", "80", "--seed", "1",
                        "-o", data])
        if rc:
            fail("synth", text)
        out = os.path.join(d, "m.st")
        ckpt, state, nxt = out + ".ckpt", out + ".ckpt.state", out + ".ckpt.next"

        # ---- 1. the two windows, rebuilt from real checkpoints
        rc, text = run(train(a.elastic, data, out, 1, False))
        if rc:
            fail("first epoch", text)
        shutil.copy(ckpt, os.path.join(d, "ckpt1"))
        shutil.copy(state, os.path.join(d, "state1"))
        rc, text = run(train(a.elastic, data, out, 2, True))
        if rc or epochs_run(text) != [2]:
            fail("resume for epoch 2", text)
        shutil.copy(ckpt, os.path.join(d, "ckpt2"))
        shutil.copy(state, os.path.join(d, "state2"))

        # killed before the state was written: epoch 1's pair and a stray .next
        shutil.copy(os.path.join(d, "ckpt1"), ckpt)
        shutil.copy(os.path.join(d, "state1"), state)
        shutil.copy(os.path.join(d, "ckpt2"), nxt)
        rc, text = run(train(a.elastic, data, out, 2, True))
        if rc or epochs_run(text) != [2] or "completed the checkpoint" in text:
            fail("a stray .next must be ignored: resume from epoch 1", text)
        print("ok   killed before the state was written: resumed after epoch 1")

        # killed between the renames: old model, new state, new .next
        shutil.copy(os.path.join(d, "ckpt1"), ckpt)
        shutil.copy(os.path.join(d, "state2"), state)
        shutil.copy(os.path.join(d, "ckpt2"), nxt)
        rc, text = run(train(a.elastic, data, out, 3, True))
        if rc or epochs_run(text) != [3] or "completed the checkpoint" not in text:
            fail("the checkpoint of epoch 2 must be completed from .next", text)
        if os.path.exists(nxt):
            fail(".next must be renamed to .ckpt")
        print("ok   killed between the renames: completed epoch 2 from .next, resumed after it")

        # a mismatched pair with nothing to complete it is refused, not used
        shutil.copy(os.path.join(d, "ckpt1"), ckpt)
        shutil.copy(os.path.join(d, "state2"), state)
        rc, text = run(train(a.elastic, data, out, 3, True))
        if rc == 0 or "not one checkpoint" not in text:
            fail("a mismatched pair must be refused", text)
        print("ok   a mismatched pair without .next is refused: " + text.strip().splitlines()[-1])

        # ---- 2. real SIGKILLs at random moments
        shutil.copy(os.path.join(d, "ckpt2"), ckpt)
        shutil.copy(os.path.join(d, "state2"), state)
        done = 2  # the last epoch with a complete checkpoint
        for r in range(a.rounds):
            log = os.path.join(d, "log%d.txt" % r)
            with open(log, "w") as f:
                p = subprocess.Popen(train(a.elastic, data, out, 10000, True), stdout=f,
                                     stderr=subprocess.STDOUT)
                time.sleep(random.uniform(0.2, 2.5))
                p.send_signal(signal.SIGKILL)
                p.wait()
            with open(log) as f:
                ran = epochs_run(f.read())
            if ran and ran[0] != done + 1:
                fail("round %d resumed at epoch %d after the checkpoint of %d" % (r, ran[0], done))
            # An epoch prints its line before its checkpoint: the last one printed
            # may be complete or not, every earlier one is. The next resume must
            # start right after one of those, and the files must be one checkpoint.
            last = max(ran) if ran else done
            rc, text = run(train(a.elastic, data, out, last + 1, True))
            if rc:
                fail("round %d: resume after the kill failed" % r, text)
            again = epochs_run(text)
            start = again[0] if again else last + 1
            lo = last if ran else done + 1
            if not lo <= start <= last + 1:
                fail("round %d: resumed at epoch %d, expected %d..%d" % (r, start, lo, last + 1),
                     text)
            print("ok   round %d: killed after %s; resumed at epoch %d%s"
                  % (r, "epochs %d..%d" % (ran[0], ran[-1]) if ran else "no epoch line", start,
                     " (completed from .next)" if "completed the checkpoint" in text else ""))
            done = last + 1
        print("kill/resume: %d SIGKILL rounds, all resumed from a complete checkpoint" % a.rounds)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
