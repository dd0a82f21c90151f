"""train.py - training in Python (include/elastic_train.h): the Trainer (Adam
steps, gradients, epochs, optimizer checkpoints) and train(), which does what
`elastic train` does (tools/cmd_train.c) with the same options, the same calls
in the same order (so the same seed writes the same model file), a progress
callback or a tqdm bar, and returns the metrics instead of printing them.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np

from . import _capi
from ._capi import check, encode
from .data import Dataset, _metrics_dict, _split_code, read_log
from .errors import InvalidArgError
from .model import Model, _config_struct
from .session import Histories, Session, as_csr

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[Dict[str, Any]], None]


def _progress_dict(p: _capi.TrainProgress, epoch: int) -> Dict[str, Any]:
    return {"epoch": epoch, "step": int(p.step), "steps": int(p.steps),
            "examples": int(p.examples), "examples_total": int(p.examples_total),
            "loss": float(p.loss), "seconds": float(p.seconds)}


def _session_options(o: _capi.SessionOptions, keep: List[Any], backend: str, device: int,
                     threads: Optional[int], allow_fallback: bool,
                     backend_options: Optional[str], attention: str = "streaming") -> None:
    b, bo = encode(backend), encode(backend_options) if backend_options else None
    keep += [b, bo]
    o.backend, o.device, o.allow_cpu_fallback = b, int(device), int(bool(allow_fallback))
    o.num_threads, o.backend_options = int(threads or 0), bo
    o.attention = _capi.ATTENTION_KINDS[attention]


class Trainer:
    """Updates a Model in place (spec section 5: softmax cross-entropy over all
    items, dropout, Adam).  Options left None keep the library's defaults
    (lr 1e-3, betas 0.9 / 0.98, eps 1e-8, dropout 0.2, batch 128, 8 samples
    per user, seed 1).  Histories and targets are model ids 1..I."""

    def __init__(self, model: Model, lr: Optional[float] = None, beta1: Optional[float] = None,
                 beta2: Optional[float] = None, adam_eps: Optional[float] = None,
                 dropout: Optional[float] = None, batch_size: Optional[int] = None,
                 samples_per_user: Optional[int] = None, seed: Optional[int] = None,
                 backend: str = "cpu", device: int = 0, threads: Optional[int] = None,
                 allow_fallback: bool = False, backend_options: Optional[str] = None,
                 objective: Optional[str] = None, mask_prob: Optional[float] = None,
                 last_prob: Optional[float] = None, negatives: Optional[int] = None,
                 sampler: Optional[str] = None):
        self._lib = _capi.lib()
        self.model = model
        o = _capi.TrainOptions()
        self._lib.elastic_train_options_default(o)
        for name, value in (("lr", lr), ("beta1", beta1), ("beta2", beta2),
                            ("adam_eps", adam_eps), ("dropout", dropout),
                            ("batch_size", batch_size), ("samples_per_user", samples_per_user),
                            ("seed", seed), ("mask_prob", mask_prob), ("last_prob", last_prob),
                            ("negatives", negatives)):
            if value is not None:
                setattr(o, name, value)
        if objective is not None:
            if objective not in _capi.OBJECTIVES:
                raise InvalidArgError(f"objective {objective!r}: not one of "
                                      f"{', '.join(_capi.OBJECTIVES)}")
            o.objective = _capi.OBJECTIVES[objective]
        if sampler is not None:
            if sampler not in _capi.SAMPLERS:
                raise InvalidArgError(f"sampler {sampler!r}: not one of "
                                      f"{', '.join(_capi.SAMPLERS)}")
            o.sampler = _capi.SAMPLERS[sampler]
        self._keep: List[Any] = []
        _session_options(o.session, self._keep, backend, device, threads, allow_fallback,
                         backend_options)
        self.options = o
        self._handle = _capi.c_void_p()
        self._set = False
        check(self._lib.elastic_trainer_init(self._handle, model._ptr(), o), "trainer")
        self._set = True
        model._users.add(self)

    def _is_open(self) -> bool:
        return bool(getattr(self, "_set", False))

    def close(self) -> None:
        """Frees the trainer (the model stays)."""
        if getattr(self, "_set", False):
            self._set = False
            self._lib.elastic_trainer_free(self._handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _h(self) -> _capi.c_void_p:
        if not self._set:
            raise ValueError("the trainer is closed")
        return self._handle

    def _batch(self, histories: Histories, targets: Any):
        items, offsets = as_csr(histories, self.model, use_item_map=False)
        t = np.ascontiguousarray(targets, dtype=np.int32).reshape(-1)
        if t.size != offsets.size - 1:
            raise InvalidArgError(f"{t.size} targets for {offsets.size - 1} histories")
        return items, offsets, t

    def gradient(self, histories: Histories, targets: Any):
        """(mean loss, gradient float32 [parameter_count]) of a batch, without
        dropout and without an update; the gradient follows Model.tensor_names."""
        items, offsets, t = self._batch(histories, targets)
        loss = _capi.c_double()
        grad = np.zeros(self.model.parameter_count, dtype=np.float32)
        check(self._lib.elastic_trainer_gradient(
            self._h(), _capi.ptr(items, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
            _capi.ptr(t, _capi.c_int32), t.size, loss, _capi.ptr(grad, _capi.c_float)),
            "gradient")
        return float(loss.value), grad

    @staticmethod
    def _positions(inputs: Any, targets: Any):
        """Sequences (lists of ids, oldest first) and their per-position targets
        as compressed rows; the library checks the values."""
        lengths = [len(x) for x in inputs]
        if len(targets) != len(inputs) or any(len(t) != n for t, n in zip(targets, lengths)):
            raise InvalidArgError("targets must have the shape of inputs")
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        x = np.ascontiguousarray([int(v) for s in inputs for v in s], dtype=np.int32)
        t = np.ascontiguousarray([int(v) for s in targets for v in s], dtype=np.int32)
        return x, offsets, t

    def gradient_positions(self, inputs: Any, targets: Any):
        """(mean loss over the scored positions, gradient float32) of sequences
        scored at chosen positions (objectives causal and cloze):
        elastic_trainer_gradient_positions.  inputs[b] holds ids 1..I or the
        mask I+1, oldest first; targets[b][i] is 1..I, or 0 for no score."""
        x, offsets, t = self._positions(inputs, targets)
        loss = _capi.c_double()
        grad = np.zeros(self.model.parameter_count, dtype=np.float32)
        check(self._lib.elastic_trainer_gradient_positions(
            self._h(), _capi.ptr(x, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
            _capi.ptr(t, _capi.c_int32), offsets.size - 1, loss, _capi.ptr(grad, _capi.c_float)),
            "gradient_positions")
        return float(loss.value), grad

    def step_positions(self, inputs: Any, targets: Any) -> float:
        """One Adam step with dropout on such a batch; the mean loss before it."""
        x, offsets, t = self._positions(inputs, targets)
        loss = _capi.c_double()
        check(self._lib.elastic_trainer_step_positions(
            self._h(), _capi.ptr(x, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
            _capi.ptr(t, _capi.c_int32), offsets.size - 1, loss), "step_positions")
        return float(loss.value)

    def step(self, histories: Histories, targets: Any) -> float:
        """One Adam step with dropout; returns the batch's mean loss before it."""
        items, offsets, t = self._batch(histories, targets)
        loss = _capi.c_double()
        check(self._lib.elastic_trainer_step(
            self._h(), _capi.ptr(items, _capi.c_int32), _capi.ptr(offsets, _capi.c_int64),
            _capi.ptr(t, _capi.c_int32), t.size, loss), "step")
        return float(loss.value)

    def epoch(self, data: Dataset, progress: Optional[ProgressFn] = None) -> Dict[str, Any]:
        """One epoch over the dataset's training items; progress(dict) is called
        after every step (keys epoch, step, steps, examples, examples_total,
        loss, seconds).  An exception raised by progress is re-raised when the
        epoch ends (the library cannot stop mid-epoch)."""
        epoch_no = self.epochs + 1
        errors: List[BaseException] = []

        def on_step(p: Any, _ctx: Any) -> None:
            if errors or progress is None:
                return
            try:
                progress(_progress_dict(p.contents, epoch_no))
            except BaseException as exc:  # noqa: BLE001  (re-raised below)
                errors.append(exc)

        cb = _capi.PROGRESS_FN(on_step)
        result = _capi.TrainProgress()
        check(self._lib.elastic_trainer_epoch(self._h(), data._h(), cb, None, result), "epoch")
        if errors:
            raise errors[0]
        return _progress_dict(result, epoch_no)

    @property
    def epochs(self) -> int:
        """Epochs done so far."""
        return int(self._lib.elastic_trainer_epochs(self._h()))

    @property
    def steps(self) -> int:
        """Adam steps done so far."""
        return int(self._lib.elastic_trainer_steps(self._h()))

    @property
    def fallback_nodes(self) -> int:
        """Nodes of the last step that ran on the CPU fallback."""
        return int(self._lib.elastic_trainer_fallback_nodes(self._h()))

    @property
    def negatives(self) -> int:
        """Negatives per step of the sampled softmax, 0 for the full softmax."""
        return int(self._lib.elastic_trainer_negatives(self._h()))

    def set_item_counts(self, counts: Any) -> None:
        """The popularity sampler's weights: counts[v - 1] training events of
        item v = 1..I (epoch() sets them from its dataset)."""
        c = np.ascontiguousarray(counts, dtype=np.int64)
        if c.shape != (self.model.num_items,):
            raise InvalidArgError(f"counts of shape {c.shape}, expected ({self.model.num_items},)")
        check(self._lib.elastic_trainer_set_item_counts(self._h(), _capi.ptr(c, _capi.c_int64)),
              "item counts")

    def save_state(self, path: PathLike) -> None:
        """Writes the optimizer state (Adam moments, counts) for a checkpoint."""
        check(self._lib.elastic_trainer_save_state(self._h(), encode(os.fspath(path))),
              os.fspath(path))

    def load_state(self, path: PathLike) -> None:
        """Reads an optimizer state written by save_state."""
        check(self._lib.elastic_trainer_load_state(self._h(), encode(os.fspath(path))),
              os.fspath(path))


class _Bar:
    """The progress display of train(): tqdm when asked for and installed, else a
    line on stderr like `elastic train`'s."""

    def __init__(self, kind: Any):
        self.kind: Any = kind
        self.bar: Any = None
        self.last = -1.0

    def __call__(self, p: Dict[str, Any]) -> None:
        if callable(self.kind) and self.kind not in (True, "tqdm"):
            self.kind(p)
            return
        if self.kind == "tqdm":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.kind = True
            else:
                if self.bar is None:
                    self.bar = tqdm(total=p["examples_total"], desc=f"epoch {p['epoch']}",
                                    unit="ex", leave=False)
                self.bar.update(p["examples"] - self.bar.n)
                self.bar.set_postfix(loss=f"{p['loss']:.4f}", refresh=False)
                return
        if p["seconds"] - self.last < 0.25 and p["examples"] < p["examples_total"]:
            return
        self.last = p["seconds"]
        rate = p["examples"] / p["seconds"] if p["seconds"] > 0 else 0.0
        sys.stderr.write(f"\repoch {p['epoch']} {p['examples']}/{p['examples_total']} "
                         f"loss {p['loss']:.4f} {rate:.0f} ex/s  ")
        sys.stderr.flush()

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.kind is True:
            sys.stderr.write("\n")
        self.last = -1.0


def train(output: PathLike, data: Union[None, PathLike, Dataset] = None, *,
          config: Optional[Mapping[str, Any]] = None, format: str = "auto", epochs: int = 30,
          patience: int = 5, max_minutes: Optional[float] = None, lr: Optional[float] = None,
          batch: Optional[int] = None, dropout: Optional[float] = None,
          samples_per_user: Optional[int] = None, seed: int = 1,
          eval_users: Optional[int] = None, backend: str = "cpu", device: int = 0,
          threads: Optional[int] = None, allow_fallback: bool = False,
          backend_options: Optional[str] = None, checkpoint: bool = False, resume: bool = False,
          objective: Optional[str] = None, mask_prob: Optional[float] = None,
          last_prob: Optional[float] = None, negatives: Optional[int] = None,
          sampler: Optional[str] = None,
          progress: Union[None, bool, str, ProgressFn] = None, verbose: bool = False
          ) -> Dict[str, Any]:
    """Trains a model as `elastic train` does and writes the one with the best
    validation HR@10 (with the item map) to `output`.

    data: a log path (format auto|pairs|movielens|csv), a Dataset, or None for
    the built-in synthetic log (elastic synth defaults, this seed).  config:
    spec section 1 keys (num_items comes from the data).  epochs, patience,
    max_minutes, lr, batch, dropout, samples_per_user, seed, eval_users,
    backend, device, threads, allow_fallback, backend_options, checkpoint
    (write output.ckpt and output.ckpt.state after every epoch), resume
    (continue from them), objective ("prefix", "causal" or "cloze", spec
    section 5; "cloze" gives a new model the mask token, mask_token=1; by
    default causal for SASRec and prefix for ELASTIC, as the command),
    mask_prob, last_prob, negatives, sampler ("uniform" or "popularity": the
    sampled softmax of spec section 5): as the command's options.  progress: a callable
    receiving a dict after every step, "tqdm" for a tqdm bar, True for a
    stderr line, None for nothing.  verbose: print the command's lines.

    Returns {"output", "data", "parameters", "epochs": [per-epoch dicts],
    "best_valid_hr10", "stopped" ("epochs", "patience" or "time"),
    "valid_popularity", "test", "test_popularity", "minutes"}."""
    say: Callable[..., None] = print if verbose else (lambda *a, **k: None)
    config = dict(config or {})
    if "num_items" in config:
        raise InvalidArgError("num_items comes from the data")
    out = os.fspath(output)
    t0 = time.time()
    own_data = not isinstance(data, Dataset)
    if isinstance(data, Dataset):
        ds = data
    elif data is None:
        from .data import synth
        ds = synth(seed=seed)
    else:
        ds = read_log(data, format)
    result: Dict[str, Any] = {"output": out, "data": {
        "source": ds.source, "users": ds.num_users, "items": ds.num_items,
        "events": ds.num_events}}
    say(f"data: {ds.source}: {ds.num_users} users, {ds.num_items} items, {ds.num_events} "
        f"events ({time.time() - t0:.2f} s)")
    ckpt, ckpt_state = out + ".ckpt", out + ".ckpt.state"
    model: Optional[Model] = None
    trainer: Optional[Trainer] = None
    bar = _Bar(progress) if progress else None
    try:
        if resume:
            model = Model.load(ckpt)
            if model.num_items != ds.num_items:
                raise InvalidArgError(f"{ckpt} has {model.num_items} items, the data "
                                      f"{ds.num_items}: other data")
        else:
            c = dict(config)
            c["num_items"] = ds.num_items
            if objective == "cloze":
                c["mask_token"] = 1  # spec 3.0, as `elastic train --objective cloze`
            _config_struct(c)  # the same validation as the command, before anything else
            model = Model.init_random(c, seed)
            model.set_metadata("item_ids", ds.item_map_json())
        result["parameters"] = model.parameter_count
        result["config"] = model.config
        if objective is None:  # the command's default: measured best per model
            objective = "causal" if model.config["model"] == "sasrec" else "prefix"
        trainer = Trainer(model, lr=lr, dropout=dropout, batch_size=batch,
                          samples_per_user=samples_per_user, seed=seed, backend=backend,
                          device=device, threads=threads, allow_fallback=allow_fallback,
                          backend_options=backend_options, objective=objective,
                          mask_prob=mask_prob, last_prob=last_prob, negatives=negatives,
                          sampler=sampler)
        if resume:
            trainer.load_state(ckpt_state)
        sess_kw: Dict[str, Any] = dict(backend=backend, device=device, threads=threads,
                       allow_fallback=allow_fallback, backend_options=backend_options)

        def run_eval(m: Model, split: str, users: Optional[int]) -> Dict[str, float]:
            with Session(m, **sess_kw) as s:
                met = _capi.Metrics()
                check(_capi.lib().elastic_evaluate(s._h(), ds._h(), _split_code(split),
                                                   int(users or 0), met), "evaluate")
                return _metrics_dict(met)

        pop = _capi.Metrics()
        check(_capi.lib().elastic_evaluate_popularity(ds._h(), 0, int(eval_users or 0), pop),
              "popularity")
        result["valid_popularity"] = _metrics_dict(pop)
        say(f"validation, popularity ranking: HR@10 {pop.hr10:.4f} NDCG@10 {pop.ndcg10:.4f} "
            f"({pop.users} users)")
        meta = model.metadata
        best = float(meta.get("train.best_valid_hr10", -1))
        bad = int(float(meta.get("train.bad_epochs", 0)))
        history: List[Dict[str, Any]] = []
        stopped = "epochs"
        start = time.time()
        for e in range(trainer.epochs, int(epochs)):
            p = trainer.epoch(ds, bar)
            if bar:
                bar.end()
            te = time.time()
            v = run_eval(model, "valid", eval_users)
            improved = v["hr10"] > best
            row = {"epoch": e + 1, "loss": p["loss"], "seconds": p["seconds"],
                   "examples_per_s": p["examples"] / p["seconds"] if p["seconds"] else 0.0,
                   "valid": v, "valid_seconds": time.time() - te, "improved": improved}
            history.append(row)
            say(f"epoch {e + 1}: loss {p['loss']:.4f}, {p['seconds']:.1f} s "
                f"({row['examples_per_s']:.0f} examples/s), validation HR@10 {v['hr10']:.4f} "
                f"NDCG@10 {v['ndcg10']:.4f} ({row['valid_seconds']:.1f} s)"
                + (", best so far: saved" if improved else ""))
            if improved:
                best, bad = v["hr10"], 0
                model.save(out)
            else:
                bad += 1
            if checkpoint:
                model.set_metadata("train.best_valid_hr10", f"{best:.17g}")
                model.set_metadata("train.bad_epochs", f"{float(bad):.17g}")
                model.save(ckpt)
                trainer.save_state(ckpt_state)
            if bad >= patience:
                stopped = "patience"
                say(f"early stop: no better validation HR@10 for {bad} epochs")
                break
            if max_minutes and time.time() - start > 60 * max_minutes:
                stopped = "time"
                say(f"time budget of {max_minutes:g} minutes reached")
                break
        result.update(epochs=history, best_valid_hr10=best, stopped=stopped)
        with Model.load(out) as best_model:
            result["test"] = run_eval(best_model, "test", None)
        tp = _capi.Metrics()
        check(_capi.lib().elastic_evaluate_popularity(ds._h(), 1, 0, tp), "popularity")
        result["test_popularity"] = _metrics_dict(tp)
        result["minutes"] = (time.time() - t0) / 60
        if verbose:
            t = result["test"]
            say(f"test ({t['users']} users, full ranking, history left out):")
            for label, m in (("model", t), ("popularity", result["test_popularity"])):
                say(f"  {label:<12s} HR@10 {m['hr10']:.4f}  HR@50 {m['hr50']:.4f}  NDCG@10 "
                    f"{m['ndcg10']:.4f}  NDCG@50 {m['ndcg50']:.4f}  MRR {m['mrr']:.4f}")
            say(f"wrote {out} ({result['minutes']:.1f} minutes)")
        return result
    finally:
        if trainer is not None:
            trainer.close()
        if model is not None:
            model.close()
        if own_data:
            ds.close()
