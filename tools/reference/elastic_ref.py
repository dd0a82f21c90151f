#!/usr/bin/env python3
"""elastic_ref.py - an independent NumPy float64 reference of the ELASTIC model
and of the SASRec baseline, written straight from docs/spec/model.md.

It is meant to be read side by side with the spec: every function names the
spec section it implements ("spec 3.2" = section 3, step 2).  It is slow on
purpose (one user at a time, plain loops where the spec speaks of loops) and
computes everything in float64; parameters are float32 values (spec 2) held
in float64 arrays.

What is here:
  - Config: the keys, defaults and constraints of spec 1;
  - param_shapes / init_params: parameter names and shapes (spec 2 and 7),
    random initialisation (spec 5) from a seeded numpy Generator;
  - user_vector / forward_states: the forward pass for one user (spec 3,
    SASRec: spec 7), with the tie rules of the product-key memory;
  - user_vectors / scores / recommend: batches (spec 4, a loop over users),
    scores and top-K with ties by smaller id and history exclusion (spec 3.5);
  - save_model / load_model: the safetensors model file (spec 2);
  - a small CLI: `python3 elastic_ref.py init|recommend|vectors ...`.

Only numpy and safetensors are needed (no scipy: erf comes from math.erf).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

FORMAT_VERSION = "1"

# --------------------------------------------------------------------------
# spec 1: names, defaults, constraints
# --------------------------------------------------------------------------

#: Every config key of spec 1, in the spec's order.
CONFIG_KEYS = ("model", "num_items", "max_len", "hidden", "heads", "layers", "experts",
               "ffn", "mem_subkeys", "mem_key", "mem_topk", "ln_eps", "mask_token")
#: Keys that SASRec ignores (spec 7).
MEMORY_KEYS = ("experts", "mem_subkeys", "mem_key", "mem_topk")
INT_KEYS = tuple(k for k in CONFIG_KEYS if k not in ("model", "ln_eps", "mask_token"))


@dataclasses.dataclass
class Config:
    """The configuration of spec 1.  ffn / mem_key of None mean 4d / d."""
    model: str = "elastic"      # `model`: elastic | sasrec
    num_items: int = 0          # I (from data: must be set)
    max_len: int = 200          # N
    hidden: int = 64            # d
    heads: int = 2              # h
    layers: int = 2             # L
    experts: int = 16           # k
    ffn: Optional[int] = None   # f, default 4d
    mem_subkeys: int = 128      # m, M = m*m memory slots
    mem_key: Optional[int] = None  # c, default d
    mem_topk: int = 8           # t
    ln_eps: float = 1e-5        # eps
    mask_token: int = 0         # 1: item_emb row I+1 is the mask (spec 3.0)

    def resolved(self) -> "Config":
        """A copy with the derived defaults filled in and the constraints of
        spec 1 checked; a broken constraint raises ValueError naming the key."""
        c = dataclasses.replace(self)
        if c.ffn is None:
            c.ffn = 4 * c.hidden
        if c.mem_key is None:
            c.mem_key = c.hidden
        if c.model not in ("elastic", "sasrec"):
            raise ValueError(f"config key 'model': {c.model!r} is neither 'elastic' nor 'sasrec'")
        sasrec = c.model == "sasrec"
        for key in INT_KEYS:
            if sasrec and key in MEMORY_KEYS:
                continue  # spec 7: SASRec ignores the expert and memory keys
            value = getattr(c, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"config key '{key}': {value!r} is not an integer")
            if value < 1:
                raise ValueError(f"config key '{key}' must be >= 1, got {value}")
        if c.hidden % c.heads:
            raise ValueError(f"config key 'heads': hidden ({c.hidden}) is not divisible by "
                             f"heads ({c.heads})")
        if not sasrec:
            if c.mem_key % 2:
                raise ValueError(f"config key 'mem_key' must be even, got {c.mem_key}")
            if c.mem_topk > c.mem_subkeys:
                raise ValueError(f"config key 'mem_topk' ({c.mem_topk}) must be <= "
                                 f"mem_subkeys ({c.mem_subkeys})")
        if not (math.isfinite(c.ln_eps) and c.ln_eps > 0):
            raise ValueError(f"config key 'ln_eps' must be a positive number, got {c.ln_eps}")
        if c.mask_token not in (0, 1) or isinstance(c.mask_token, bool):
            raise ValueError(f"config key 'mask_token' must be 0 or 1, got {c.mask_token!r}")
        return c

    def to_metadata(self) -> Dict[str, str]:
        """The model file's __metadata__ (spec 2): every key of spec 1 as a
        string (numbers in decimal), plus format_version."""
        c = self.resolved()
        meta = {"format_version": FORMAT_VERSION, "model": c.model}
        for key in INT_KEYS:
            meta[key] = str(int(getattr(c, key)))
        meta["ln_eps"] = repr(float(c.ln_eps))  # shortest round-trip decimal, e.g. "1e-05"
        meta["mask_token"] = str(int(c.mask_token))
        return meta

    @classmethod
    def from_metadata(cls, meta: Dict[str, str]) -> "Config":
        """Reads the config back from __metadata__; unknown keys are ignored."""
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {meta.get('format_version')!r}")
        kwargs = {}
        for key in CONFIG_KEYS:
            if key not in meta:
                if meta.get("model") == "sasrec" and key in MEMORY_KEYS:
                    continue
                if key == "mask_token":
                    continue  # a version-1 file: no mask token (spec 2)
                raise ValueError(f"__metadata__ lacks the config key '{key}'")
            value = meta[key]
            if key == "model":
                kwargs[key] = value
            elif key == "ln_eps":
                kwargs[key] = float(value)
            elif key == "mask_token":
                if value not in ("0", "1"):
                    raise ValueError(f"config key 'mask_token': {value!r} is not 0 or 1")
                kwargs[key] = int(value)
            else:
                kwargs[key] = int(value, 10)
        return cls(**kwargs).resolved()

    @classmethod
    def from_strings(cls, pairs: Iterable[str]) -> "Config":
        """Config from "key=value" strings (the CLI's --config)."""
        kwargs = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in CONFIG_KEYS:
                raise ValueError(f"unknown config key '{key}'")
            kwargs[key] = value if key == "model" else (
                float(value) if key == "ln_eps" else int(value, 10))
        return cls(**kwargs).resolved()


# --------------------------------------------------------------------------
# spec 2 and 7: parameter names and shapes
# --------------------------------------------------------------------------

def _norm(prefix: str, d: int) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(f"{prefix}.weight", (d,)), (f"{prefix}.bias", (d,))]


def _linear(prefix: str, out: int, inp: int) -> List[Tuple[str, Tuple[int, ...]]]:
    # PyTorch convention: W is [out, in], y = x W^T + b.
    return [(f"{prefix}.weight", (out, inp)), (f"{prefix}.bias", (out,))]


def _attention(prefix: str, d: int) -> List[Tuple[str, Tuple[int, ...]]]:
    shapes = []
    for proj in ("q", "k", "v", "o"):
        shapes += _linear(f"{prefix}.{proj}", d, d)
    return shapes


def _ffn(prefix: str, d: int, f: int) -> List[Tuple[str, Tuple[int, ...]]]:
    return _norm(f"{prefix}.norm", d) + _linear(f"{prefix}.fc1", f, d) + \
        _linear(f"{prefix}.fc2", d, f)


def param_shapes(cfg: Config) -> Dict[str, Tuple[int, ...]]:
    """Every parameter name and shape, in the spec's order (spec 2; SASRec: spec 7)."""
    c = cfg.resolved()
    I, N, d, f = c.num_items, c.max_len, c.hidden, c.ffn
    shapes: List[Tuple[str, Tuple[int, ...]]] = [("item_emb", (I + 1 + c.mask_token, d)),
                                                 ("pos_emb", (N, d))]
    if c.model == "elastic":
        k, m, cc = c.experts, c.mem_subkeys, c.mem_key
        shapes += _norm("imr.norm", d)
        shapes += _linear("imr.query", k * cc, d)
        shapes += [("imr.subkeys", (2, m, cc // 2)), ("imr.values", (m * m, d))]
        for i in range(c.layers):
            p = f"layers.{i}"
            shapes += _norm(f"{p}.agg.norm_p", d) + _norm(f"{p}.agg.norm_x", d)
            shapes += _attention(f"{p}.agg", d)
            shapes += _ffn(f"{p}.ffn_p", d, f)
            shapes += _norm(f"{p}.disp.norm_x", d) + _norm(f"{p}.disp.norm_p", d)
            shapes += _attention(f"{p}.disp", d)
            shapes += _ffn(f"{p}.ffn_x", d, f)
    else:
        for i in range(c.layers):
            p = f"layers.{i}"
            shapes += _norm(f"{p}.attn.norm", d)
            shapes += _attention(f"{p}.attn", d)
            shapes += _ffn(f"{p}.ffn_x", d, f)
    shapes += _norm("final_norm", d)
    return dict(shapes)


# --------------------------------------------------------------------------
# spec 5: initialisation
# --------------------------------------------------------------------------

def _f32(a: np.ndarray) -> np.ndarray:
    """Rounds to float32 (spec 2: parameters are float32) and holds it in float64."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def init_params(cfg: Config, seed: int, weight_std: float = 0.02, bias_std: float = 0.0,
                norm_std: float = 0.0, linear_gain: Optional[float] = None
                ) -> Dict[str, np.ndarray]:
    """Random parameters from numpy's Generator(PCG64(seed)).

    With the defaults this is spec 5: item_emb, pos_emb, imr.values and every
    Linear weight ~ N(0, 0.02^2), item_emb row 0 = 0; biases 0; LayerNorm
    weight 1, bias 0; imr.subkeys ~ N(0, 1/(c/2)).  Tests may raise
    weight_std, and draw biases ~ N(0, bias_std^2) and LayerNorm weights
    1 + N(0, norm_std^2), biases N(0, norm_std^2), so that every parameter
    matters and errors show; with linear_gain, Linear weights are instead
    ~ N(0, linear_gain^2 / fan_in), which keeps attention logits O(1) (a flat
    N(0, 0.5^2) makes them ~50 wide: softmax saturates and the model becomes
    so ill-conditioned that float32 rounding alone moves outputs by ~1e-5).
    Values are float32-representable.
    """
    c = cfg.resolved()
    rng = np.random.default_rng(seed)
    params: Dict[str, np.ndarray] = {}
    for name, shape in param_shapes(c).items():
        module = name.rsplit(".", 1)[0].split(".")[-1]  # e.g. "norm_p" of agg.norm_p.weight
        is_norm = module in ("norm", "norm_p", "norm_x", "final_norm")
        if name == "imr.subkeys":
            value = rng.normal(0.0, math.sqrt(1.0 / (c.mem_key // 2)), shape)
        elif is_norm and name.endswith(".weight"):
            value = 1.0 + (rng.normal(0.0, norm_std, shape) if norm_std else np.zeros(shape))
        elif is_norm and name.endswith(".bias"):
            value = rng.normal(0.0, norm_std, shape) if norm_std else np.zeros(shape)
        elif name.endswith(".bias"):
            value = rng.normal(0.0, bias_std, shape) if bias_std else np.zeros(shape)
        elif linear_gain is not None and len(shape) == 2 and name.endswith(".weight"):
            value = rng.normal(0.0, linear_gain / math.sqrt(shape[1]), shape)  # [out, in]
        else:  # item_emb, pos_emb, imr.values, Linear weights
            value = rng.normal(0.0, weight_std, shape)
        params[name] = _f32(value)
    params["item_emb"][0, :] = 0.0  # padding row stays zero
    return params


def check_params(cfg: Config, params: Dict[str, np.ndarray]) -> None:
    """Raises ValueError unless params has exactly the names and shapes of spec 2/7."""
    shapes = param_shapes(cfg)
    missing = [n for n in shapes if n not in params]
    if missing:
        raise ValueError(f"missing tensor(s): {', '.join(missing)}")
    for name, shape in shapes.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(f"tensor '{name}' has shape {tuple(params[name].shape)}, "
                             f"expected {shape}")


# --------------------------------------------------------------------------
# spec 3: building blocks
# --------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def layer_norm(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LN(z) = (z - mean(z)) / sqrt(var(z) + eps) * weight + bias, last axis, biased var."""
    mean = z.mean(axis=-1, keepdims=True)
    var = ((z - mean) ** 2).mean(axis=-1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps) * weight + bias


def gelu(z: np.ndarray) -> np.ndarray:
    """GELU(z) = 0.5 z (1 + erf(z / sqrt(2))), exact erf."""
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


def linear(x: np.ndarray, params: Dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """y = x W^T + b (W is [out, in])."""
    return x @ params[f"{prefix}.weight"].T + params[f"{prefix}.bias"]


def norm(x: np.ndarray, params: Dict[str, np.ndarray], prefix: str, eps: float) -> np.ndarray:
    return layer_norm(x, params[f"{prefix}.weight"], params[f"{prefix}.bias"], eps)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; -inf entries get weight 0."""
    zmax = z.max(axis=-1, keepdims=True)
    e = np.exp(z - zmax)
    return e / e.sum(axis=-1, keepdims=True)


def ffn(z: np.ndarray, params: Dict[str, np.ndarray], prefix: str, eps: float) -> np.ndarray:
    """FFN(z) = fc2(GELU(fc1(LN(z)))) with the block's own `norm`."""
    hidden = gelu(linear(norm(z, params, f"{prefix}.norm", eps), params, f"{prefix}.fc1"))
    return linear(hidden, params, f"{prefix}.fc2")


def mha(q_in: np.ndarray, kv_in: np.ndarray, params: Dict[str, np.ndarray], prefix: str,
        heads: int, allowed: Optional[np.ndarray] = None) -> np.ndarray:
    """MHA(Qin, KVin; q,k,v,o), spec 3 building blocks, including the `o` projection.

    For each head: A = softmax(Qh Kh^T / sqrt(d/h)) over keys, out_h = A Vh;
    heads are concatenated, then `o` is applied.  `allowed` ([queries, keys],
    bool) masks keys out (SASRec's causal mask, spec 7).
    """
    q = linear(q_in, params, f"{prefix}.q")
    k = linear(kv_in, params, f"{prefix}.k")
    v = linear(kv_in, params, f"{prefix}.v")
    d = q.shape[-1]
    dh = d // heads
    out = np.empty((q_in.shape[0], d))
    for head in range(heads):
        cols = slice(head * dh, (head + 1) * dh)
        logits = q[:, cols] @ k[:, cols].T / math.sqrt(dh)
        if allowed is not None:
            logits = np.where(allowed, logits, -np.inf)
        out[:, cols] = softmax(logits) @ v[:, cols]
    return linear(out, params, f"{prefix}.o")


def top_indices(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest values, largest first, ties by the smaller index."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return np.array(order[:count], dtype=np.int64)


# --------------------------------------------------------------------------
# spec 3: forward pass for one user
# --------------------------------------------------------------------------

def read_history(cfg: Config, history: Sequence[int]) -> np.ndarray:
    """The items read, most recent first: s_0 .. s_{n-1}, n = min(len, N) (spec 1, 3);
    with a mask token, s_0 is the mask id I+1 and n = min(len + 1, N) (spec 3.0)."""
    history = [int(v) for v in history]
    if not history:
        raise ValueError("empty history")
    for v in history:
        if not 1 <= v <= cfg.num_items:
            raise ValueError(f"item id {v} outside 1..{cfg.num_items}")
    mask = [cfg.num_items + 1] if cfg.mask_token else []
    n = min(len(history) + len(mask), cfg.max_len)
    return np.array((mask + history[::-1])[:n], dtype=np.int64)


def embed(cfg: Config, params: Dict[str, np.ndarray], history: Sequence[int],
          read: Optional[np.ndarray] = None) -> np.ndarray:
    """Spec 3.1: X[r] = item_emb[s_r] + pos_emb[r], r = 0..n-1 (recency positions).
    `read` gives s itself (training inputs, which may hold the mask anywhere)."""
    s = read_history(cfg, history) if read is None else np.asarray(read, dtype=np.int64)
    return params["item_emb"][s] + params["pos_emb"][: len(s)]


def memory_read(q_j: np.ndarray, subkeys: np.ndarray, values: np.ndarray, t: int
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spec 3.2 for one expert: product-key retrieval of one query q_j [c].

    Returns (slots, weights, P_j): the t kept slots (best first), their
    softmax weights and P_j = sum of w * values[slot].  Ties: in the top-t
    of sa and of sb by the smaller index; among the t*t pairs by the smaller
    slot x*m + y.
    """
    m = subkeys.shape[1]
    half = q_j.shape[0] // 2
    a, b = q_j[:half], q_j[half:]
    sa = a @ subkeys[0].T                       # [m]
    sb = b @ subkeys[1].T                       # [m]
    A = top_indices(sa, t)
    B = top_indices(sb, t)
    pairs = [(sa[x] + sb[y], x * m + y) for x in A for y in B]
    pairs.sort(key=lambda p: (-p[0], p[1]))     # best score first, ties by smaller slot
    kept = pairs[:t]
    slots = np.array([slot for _, slot in kept], dtype=np.int64)
    w = softmax(np.array([score for score, _ in kept]))
    return slots, w, w @ values[slots]


def memory_margin(q_j: np.ndarray, subkeys: np.ndarray, t: int) -> float:
    """How close the selection of memory_read is to a tie: the smallest gap
    between the last kept and the first dropped score (sa, sb and the pairs).
    Not in the spec; tests use it to explain a selection that flips under
    float32 rounding.  inf when nothing is dropped."""
    m = subkeys.shape[1]
    half = q_j.shape[0] // 2
    sa = q_j[:half] @ subkeys[0].T
    sb = q_j[half:] @ subkeys[1].T
    gaps = []
    for s in (sa, sb):
        order = np.sort(s)[::-1]
        if t < m:
            gaps.append(order[t - 1] - order[t])
    A, B = top_indices(sa, t), top_indices(sb, t)
    pair_scores = np.sort(np.array([sa[x] + sb[y] for x in A for y in B]))[::-1]
    if t < len(pair_scores):
        gaps.append(pair_scores[t - 1] - pair_scores[t])
    return float(min(gaps)) if gaps else math.inf


def imr(cfg: Config, params: Dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Spec 3.2: interest memory retrieval; returns P [k, d]."""
    c = cfg.resolved()
    u = norm(X.mean(axis=0), params, "imr.norm", c.ln_eps)          # [d]
    Q = linear(u, params, "imr.query").reshape(c.experts, c.mem_key)  # [k, c]
    P = np.empty((c.experts, c.hidden))
    for j in range(c.experts):
        _, _, P[j] = memory_read(Q[j], params["imr.subkeys"], params["imr.values"], c.mem_topk)
    return P


def imr_margin(cfg: Config, params: Dict[str, np.ndarray], history: Sequence[int]) -> float:
    """The smallest memory_margin over the experts of one user (diagnostics)."""
    c = cfg.resolved()
    X = embed(c, params, history)
    u = norm(X.mean(axis=0), params, "imr.norm", c.ln_eps)
    Q = linear(u, params, "imr.query").reshape(c.experts, c.mem_key)
    return min(memory_margin(Q[j], params["imr.subkeys"], c.mem_topk) for j in range(c.experts))


def elastic_states(cfg: Config, params: Dict[str, np.ndarray], history: Sequence[int],
                   read: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Spec 3.1-3.3: the final X [n, d] and P [k, d] of one user (`read`: see embed)."""
    c = cfg.resolved()
    eps, h = c.ln_eps, c.heads
    X = embed(c, params, history, read)                              # 3.1
    P = imr(c, params, X)                                            # 3.2
    for i in range(c.layers):                                        # 3.3, pre-LN residual
        p = f"layers.{i}"
        # aggregation: k queries (experts) over n keys (items)
        P = P + mha(norm(P, params, f"{p}.agg.norm_p", eps),
                    norm(X, params, f"{p}.agg.norm_x", eps), params, f"{p}.agg", h)
        P = P + ffn(P, params, f"{p}.ffn_p", eps)
        # dispatch: n queries (items) over k keys (experts)
        X = X + mha(norm(X, params, f"{p}.disp.norm_x", eps),
                    norm(P, params, f"{p}.disp.norm_p", eps), params, f"{p}.disp", h)
        X = X + ffn(X, params, f"{p}.ffn_x", eps)
    return X, P


def causal_allowed(n: int) -> np.ndarray:
    """Spec 7: the query at recency r sees the keys at recency r' >= r (itself and older)."""
    r = np.arange(n)
    return r[None, :] >= r[:, None]   # [query r, key r']


def sasrec_states(cfg: Config, params: Dict[str, np.ndarray], history: Sequence[int],
                  read: Optional[np.ndarray] = None) -> np.ndarray:
    """Spec 7: the final X [n, d] of the SASRec baseline for one user (`read`: see embed)."""
    c = cfg.resolved()
    eps = c.ln_eps
    X = embed(c, params, history, read)                              # same embedding (3.1)
    allowed = causal_allowed(X.shape[0])
    for i in range(c.layers):
        p = f"layers.{i}"
        Z = norm(X, params, f"{p}.attn.norm", eps)
        X = X + mha(Z, Z, params, f"{p}.attn", c.heads, allowed)
        X = X + ffn(X, params, f"{p}.ffn_x", eps)
    return X


def user_vector(cfg: Config, params: Dict[str, np.ndarray], history: Sequence[int]
                ) -> np.ndarray:
    """Spec 3.4 (and 7): hu = final_norm(X[0]), the most recent position."""
    c = cfg.resolved()
    if c.model == "elastic":
        X, _ = elastic_states(c, params, history)
    else:
        X = sasrec_states(c, params, history)
    return norm(X[0], params, "final_norm", c.ln_eps)


def item_scores(params: Dict[str, np.ndarray], hu: np.ndarray,
                num_items: Optional[int] = None) -> np.ndarray:
    """Spec 3.5: score(v) = hu . item_emb[v] for v = 1..I; entry v-1 is item v.
    Give num_items for a model with a mask token (its row I+1 is no class)."""
    return params["item_emb"][1:(num_items + 1 if num_items else None)] @ hu


def top_k(scores_row: np.ndarray, k: int, history: Sequence[int] = (),
          exclude_history: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Spec 3.5 / 6: the k highest-scoring items, ties by the smaller id, leaving
    out every item of the history (all of it, not only the N items read).
    Returns (ids, scores) of length k, padded with id 0 and -inf when fewer
    than k items remain (the C API's convention)."""
    excluded = set(int(v) for v in history) if exclude_history else set()
    candidates = [v for v in range(1, len(scores_row) + 1) if v not in excluded]
    candidates.sort(key=lambda v: (-scores_row[v - 1], v))
    chosen = candidates[:k]
    ids = np.zeros(k, dtype=np.int64)
    out = np.full(k, -np.inf)
    ids[: len(chosen)] = chosen
    out[: len(chosen)] = [scores_row[v - 1] for v in chosen]
    return ids, out


# --------------------------------------------------------------------------
# spec 4: batches (a loop over users: a batch equals the users run alone)
# --------------------------------------------------------------------------

def csr_to_lists(items: Sequence[int], offsets: Sequence[int]) -> List[List[int]]:
    """Histories in compressed-row form (oldest first) to a list of lists."""
    return [list(map(int, items[offsets[b]:offsets[b + 1]])) for b in range(len(offsets) - 1)]


def lists_to_csr(histories: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray]:
    """A list of histories (oldest first) to (items int32, offsets int64 [B+1])."""
    offsets = np.zeros(len(histories) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(h) for h in histories])
    items = np.array([v for h in histories for v in h], dtype=np.int32)
    return items, offsets


def user_vectors(cfg: Config, params: Dict[str, np.ndarray],
                 histories: Sequence[Sequence[int]]) -> np.ndarray:
    """[B, d]: row b is user_vector of history b."""
    return np.stack([user_vector(cfg, params, h) for h in histories])


def scores(cfg: Config, params: Dict[str, np.ndarray],
           histories: Sequence[Sequence[int]]) -> np.ndarray:
    """[B, I]: row b, entry v-1 is the score of item v for user b (never the mask)."""
    return user_vectors(cfg, params, histories) @ params["item_emb"][1:cfg.num_items + 1].T


# --------------------------------------------------------------------------
# spec 5: the position objectives (causal, cloze)
# --------------------------------------------------------------------------

def position_loss(cfg: Config, params: Dict[str, np.ndarray], inputs: Sequence[Sequence[int]],
                  targets: Sequence[Sequence[int]]) -> float:
    """The loss of a batch scored at chosen positions (spec 5, causal and cloze):
    sequence b is inputs[b] (oldest first, ids 1..I or the mask I+1, at most N),
    targets[b][i] the item the output at position i is scored against (0: not
    scored).  Every position runs the whole model (no shortcut); the loss is
    the mean over scored positions of logsumexp(scores) - score[target], the
    scores against items 1..I only."""
    c = cfg.resolved()
    total, count = 0.0, 0
    E = params["item_emb"][1:c.num_items + 1]
    for x, t in zip(inputs, targets):
        s = np.array([int(v) for v in x][::-1], dtype=np.int64)  # recency order
        if not 1 <= len(s) <= c.max_len:
            raise ValueError(f"sequence of {len(s)} items, not 1..{c.max_len}")
        if c.model == "elastic":
            X, _ = elastic_states(c, params, [], read=s)
        else:
            X = sasrec_states(c, params, [], read=s)
        H = norm(X, params, "final_norm", c.ln_eps)               # [n, d]
        for i, v in enumerate(t):
            if not v:
                continue
            row = E @ H[len(s) - 1 - i]                            # position i: recency n-1-i
            m = row.max()
            total += m + math.log(np.exp(row - m).sum()) - row[int(v) - 1]
            count += 1
    if not count:
        raise ValueError("no position has a target")
    return total / count


def recommend(cfg: Config, params: Dict[str, np.ndarray], histories: Sequence[Sequence[int]],
              k: int, exclude_history: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """[B, k] ids and scores (see top_k)."""
    all_scores = scores(cfg, params, histories)
    rows = [top_k(all_scores[b], k, h, exclude_history) for b, h in enumerate(histories)]
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


# --------------------------------------------------------------------------
# spec 2: model files
# --------------------------------------------------------------------------

def save_model(path: str, cfg: Config, params: Dict[str, np.ndarray],
               extra_metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a safetensors model file: float32 tensors, config in __metadata__."""
    from safetensors.numpy import save_file
    c = cfg.resolved()
    check_params(c, params)
    meta = dict(extra_metadata or {})
    meta.update(c.to_metadata())  # the config is authoritative for its keys
    tensors = {name: np.ascontiguousarray(params[name], dtype=np.float32)
               for name in param_shapes(c)}
    save_file(tensors, path, metadata=meta)


def load_model(path: str) -> Tuple[Config, Dict[str, np.ndarray], Dict[str, str]]:
    """Reads a model file: (config, float64 parameters, all metadata)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file
    with safe_open(path, "np") as f:
        meta = dict(f.metadata() or {})
    cfg = Config.from_metadata(meta)
    raw = load_file(path)
    params = {}
    for name in param_shapes(cfg):
        if name not in raw:
            raise ValueError(f"model file lacks tensor '{name}'")
        if raw[name].dtype != np.float32:
            raise ValueError(f"tensor '{name}' is {raw[name].dtype}, expected float32")
        params[name] = raw[name].astype(np.float64)
    check_params(cfg, params)
    return cfg, params, meta


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _parse_history(text: str) -> List[int]:
    return [int(v) for v in text.replace(",", " ").split()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("init", help="write a randomly initialised model file (spec 5)")
    a.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--weight-std", type=float, default=0.02)
    a.add_argument("--out", required=True)
    for name, help_text in (("recommend", "top-K items per history"),
                            ("vectors", "user vectors per history")):
        b = sub.add_parser(name, help=help_text)
        b.add_argument("--model", required=True)
        b.add_argument("--history", action="append", required=True,
                       help="item ids oldest first, e.g. '3,1,4' (repeat per user)")
        if name == "recommend":
            b.add_argument("-k", type=int, default=10)
            b.add_argument("--keep-history", action="store_true",
                           help="do not leave the history's items out")
    args = ap.parse_args(argv)

    if args.cmd == "init":
        cfg = Config.from_strings(args.config)
        save_model(args.out, cfg, init_params(cfg, args.seed, weight_std=args.weight_std))
        print(f"wrote {args.out}: {cfg.to_metadata()}")
        return 0
    cfg, params, _ = load_model(args.model)
    histories = [_parse_history(h) for h in args.history]
    np.set_printoptions(precision=17, linewidth=200)
    if args.cmd == "vectors":
        for hu in user_vectors(cfg, params, histories):
            print(" ".join(repr(float(x)) for x in hu))
    else:
        ids, sc = recommend(cfg, params, histories, args.k, not args.keep_history)
        for row_ids, row_sc in zip(ids, sc):
            print(" ".join(f"{int(i)}:{float(s)!r}" for i, s in zip(row_ids, row_sc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
