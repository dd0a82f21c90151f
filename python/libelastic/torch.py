#!/usr/bin/env python3
"""torch.py - libelastic.torch: the PyTorch port of the ELASTIC model and of the
SASRec baseline, written from docs/spec/model.md, for training and for checking
the C library, and the bridge to the C library's models (to_torch, from_torch).
Optional: needs torch (and safetensors for load / save).

Comments name the spec section they implement ("spec 3.2" = section 3, step 2).
Parameter names in the state_dict are exactly the spec's (spec 2 and 7), so a
model file and a state_dict convert name for name.  Everything is batched over
users with padding (spec 4): padded positions are masked out of the IMR mean,
out of the aggregation keys and out of SASRec's attention keys, and their rows
of X are never read.

API (other code depends on these names):
  to_torch(model) -> module;  from_torch(module) -> libelastic.Model (bit for bit)
  load(path, device) / save(module, path, metadata)   the safetensors model file
  load(path, fast=True), to_torch(model, fast=True): the fast inference port
      (libelastic.torch_fast: last-layer shortcut, SDPA, fused projections, GEMM
      sub-key scores); the exact port stays the default (the golden tests use it)
  config_from_metadata(meta) -> dict, from_state_dict(config, state_dict)
  batch(histories, max_len) -> (items [B, n], lengths [B]), column 0 = most recent
  module(items, lengths) -> hu [B, d];  module.scores(hu) -> [B, I]
  module.recommend(items, lengths, k, exclude) -> (ids, scores)
  module.loss(items, lengths, targets) -> mean cross-entropy (spec 5)
CLI: `python3 -m libelastic.torch recommend MODEL [FILE|-]`,
     `python3 -m libelastic.torch convert IN OUT`.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT_VERSION = "1"

# --------------------------------------------------------------------------
# spec 1: config keys, defaults, constraints
# --------------------------------------------------------------------------

#: Every config key of spec 1 with its default (ffn / mem_key None = 4d / d).
DEFAULTS = {"model": "elastic", "num_items": None, "max_len": 200, "hidden": 64, "heads": 2,
            "layers": 2, "experts": 16, "ffn": None, "mem_subkeys": 128, "mem_key": None,
            "mem_topk": 8, "ln_eps": 1e-5, "mask_token": 0}
CONFIG_KEYS = tuple(DEFAULTS)
#: Keys SASRec ignores (spec 7).
MEMORY_KEYS = ("experts", "mem_subkeys", "mem_key", "mem_topk")
INT_KEYS = tuple(k for k in CONFIG_KEYS if k not in ("model", "ln_eps", "mask_token"))
DEFAULT_DROPOUT = 0.2  # spec 5


def resolve_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The spec keys of `config` with defaults filled in (ffn = 4d, mem_key = d)
    and the constraints of spec 1 checked; raises ValueError naming the key.
    Keys not in spec 1 (e.g. `dropout`) are dropped."""
    c: Dict[str, Any] = dict(DEFAULTS)
    c.update({k: v for k, v in config.items() if k in DEFAULTS})
    if c["num_items"] is None:
        raise ValueError("config key 'num_items' is required")
    if c["ffn"] is None:
        c["ffn"] = 4 * int(c["hidden"])
    if c["mem_key"] is None:
        c["mem_key"] = int(c["hidden"])
    if c["model"] not in ("elastic", "sasrec"):
        raise ValueError(f"config key 'model': {c['model']!r} is neither 'elastic' nor 'sasrec'")
    sasrec = c["model"] == "sasrec"
    for key in INT_KEYS:
        value = c[key]
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"config key '{key}': {value!r} is not an integer")
        c[key] = int(value)
        if not (sasrec and key in MEMORY_KEYS) and c[key] < 1:
            raise ValueError(f"config key '{key}' must be >= 1, got {value}")
    c["ln_eps"] = float(c["ln_eps"])
    if isinstance(c["mask_token"], bool) or c["mask_token"] not in (0, 1):
        raise ValueError(f"config key 'mask_token' must be 0 or 1, got {c['mask_token']!r}")
    c["mask_token"] = int(c["mask_token"])
    if c["hidden"] % c["heads"]:
        raise ValueError(f"config key 'heads': hidden ({c['hidden']}) is not divisible by "
                         f"heads ({c['heads']})")
    if not sasrec:
        if c["mem_key"] % 2:
            raise ValueError(f"config key 'mem_key' must be even, got {c['mem_key']}")
        if c["mem_topk"] > c["mem_subkeys"]:
            raise ValueError(f"config key 'mem_topk' ({c['mem_topk']}) must be <= "
                             f"mem_subkeys ({c['mem_subkeys']})")
    if not (math.isfinite(c["ln_eps"]) and c["ln_eps"] > 0):
        raise ValueError(f"config key 'ln_eps' must be a positive number, got {c['ln_eps']}")
    return c


def config_from_metadata(meta: Dict[str, str]) -> Dict[str, Any]:
    """The config dict of a model file's __metadata__ (spec 2); unknown keys ignored,
    except `dropout` (spec 5), which is kept when present."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported format_version {meta.get('format_version')!r}")
    config: Dict[str, object] = {}
    for key in CONFIG_KEYS:
        if key not in meta:
            if meta.get("model") == "sasrec" and key in MEMORY_KEYS:
                continue  # spec 7: SASRec ignores them
            if key == "mask_token":
                continue  # a version-1 file: no mask token
            raise ValueError(f"__metadata__ lacks the config key '{key}'")
        value = meta[key]
        if key == "model":
            config[key] = value
        elif key == "ln_eps":
            config[key] = float(value)
        else:
            config[key] = int(value, 10)
    config = resolve_config(config)
    if "dropout" in meta:
        config["dropout"] = float(meta["dropout"])
    return config


def config_to_metadata(config: Dict[str, object]) -> Dict[str, str]:
    """Every spec 1 key as a string (numbers in decimal) plus format_version (spec 2)."""
    c = resolve_config(config)
    meta = {"format_version": FORMAT_VERSION, "model": str(c["model"])}
    for key in INT_KEYS:
        meta[key] = str(int(c[key]))
    meta["ln_eps"] = repr(float(c["ln_eps"]))  # shortest round-trip decimal, e.g. "1e-05"
    meta["mask_token"] = str(c["mask_token"])
    return meta


# --------------------------------------------------------------------------
# spec 3: building blocks
# --------------------------------------------------------------------------

def top_indices(values: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` largest entries of the last axis, largest first,
    ties by the smaller index (spec 3.2).  A stable ascending sort of -values
    keeps equal entries in index order; torch.topk's tie order is unspecified."""
    return torch.sort(-values, dim=-1, stable=True).indices[..., :count]


class Attention(nn.Module):
    """MHA(Qin, KVin; q,k,v,o) of spec 3, `o` included: per head
    A = softmax(Qh Kh^T / sqrt(d/h)) over keys, out_h = A Vh, heads concatenated."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor,
                allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """q_in [B, Lq, d], kv_in [B, Lk, d]; allowed: bool, broadcastable to
        [B, Lq, Lk], False masks a key out.  Every query must keep one key."""
        B, Lq, d = q_in.shape
        Lk, h = kv_in.shape[1], self.heads
        dh = d // h
        q = self.q(q_in).view(B, Lq, h, dh).transpose(1, 2)   # [B, h, Lq, dh]
        k = self.k(kv_in).view(B, Lk, h, dh).transpose(1, 2)  # [B, h, Lk, dh]
        v = self.v(kv_in).view(B, Lk, h, dh).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / math.sqrt(dh)      # [B, h, Lq, Lk]
        if allowed is not None:
            logits = logits.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        out = torch.softmax(logits, dim=-1) @ v                # [B, h, Lq, dh]
        return self.o(out.transpose(1, 2).reshape(B, Lq, d))


class CrossAttention(Attention):
    """Aggregation / dispatch block (spec 3.3): its own LayerNorms on both inputs."""

    def __init__(self, d: int, heads: int, eps: float, query_norm: str, key_norm: str):
        super().__init__(d, heads)
        self.query_norm, self.key_norm = query_norm, key_norm
        # registered under the spec's names: agg.norm_p/norm_x, disp.norm_x/norm_p
        self.add_module(query_norm, nn.LayerNorm(d, eps=eps))
        self.add_module(key_norm, nn.LayerNorm(d, eps=eps))

    def forward(self, queries, keys, allowed=None):  # type: ignore[override]
        return super().forward(getattr(self, self.query_norm)(queries),
                               getattr(self, self.key_norm)(keys), allowed)


class SelfAttention(Attention):
    """SASRec's attention block (spec 7): attn.norm, then causal MHA."""

    def __init__(self, d: int, heads: int, eps: float):
        super().__init__(d, heads)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, allowed=None):  # type: ignore[override]
        z = self.norm(x)
        return super().forward(z, z, allowed)


class FFN(nn.Module):
    """FFN(z) = fc2(GELU(fc1(LN(z)))), exact erf GELU (spec 3)."""

    def __init__(self, d: int, f: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, f)
        self.fc2 = nn.Linear(f, d)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(z)), approximate="none"))


class InterestMemory(nn.Module):
    """Spec 3.2: interest memory retrieval, a product-key memory with k query heads."""

    def __init__(self, d: int, k: int, m: int, c: int, t: int, eps: float):
        super().__init__()
        self.k, self.m, self.c, self.t = k, m, c, t
        self.norm = nn.LayerNorm(d, eps=eps)
        self.query = nn.Linear(d, k * c)
        self.subkeys = nn.Parameter(torch.zeros(2, m, c // 2))
        self.values = nn.Parameter(torch.zeros(m * m, d))
        self.last_slots: Optional[torch.Tensor] = None  # [B, k, t] of the last call (tests)

    def forward(self, X: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """X [B, n, d], valid [B, n] bool -> P [B, k, d]."""
        B = X.shape[0]
        k, m, c, t = self.k, self.m, self.c, self.t
        # u = LN_imr(mean over the valid r of X[r])
        w = valid.to(X.dtype).unsqueeze(-1)
        u = self.norm((X * w).sum(dim=1) / w.sum(dim=1))              # [B, d]
        Q = self.query(u).view(B, k, c)                               # q_j, [B, k, c]
        # sa = a . subkeys[0]^T, sb = b . subkeys[1]^T, [B, k, m] each.  A product and a
        # sum over the last axis, not a GEMM: every entry is then reduced the same way, so
        # equal sub-keys give exactly equal scores and the tie rule below decides (a GEMM
        # may round edge columns differently and turn a tie into an arbitrary choice).
        sa = (Q[..., None, : c // 2] * self.subkeys[0]).sum(dim=-1)
        sb = (Q[..., None, c // 2:] * self.subkeys[1]).sum(dim=-1)
        A = top_indices(sa, t)                                        # [B, k, t], ties: smaller
        Bi = top_indices(sb, t)
        pair = sa.gather(-1, A).unsqueeze(-1) + sb.gather(-1, Bi).unsqueeze(-2)  # [B, k, t, t]
        slot = A.unsqueeze(-1) * m + Bi.unsqueeze(-2)                 # slot = x*m + y
        pair, slot = pair.reshape(B, k, t * t), slot.reshape(B, k, t * t)
        # t best pairs, ties by the smaller slot: order by slot, then a stable sort by score
        by_slot = torch.sort(slot, dim=-1, stable=True).indices
        pair, slot = pair.gather(-1, by_slot), slot.gather(-1, by_slot)
        best = top_indices(pair, t)
        kept, kept_slot = pair.gather(-1, best), slot.gather(-1, best)  # [B, k, t]
        self.last_slots = kept_slot.detach()
        wts = torch.softmax(kept, dim=-1)
        vals = self.values[kept_slot]                                 # [B, k, t, d]
        return (wts.unsqueeze(-1) * vals).sum(dim=-2)                 # P, [B, k, d]


class ElasticLayer(nn.Module):
    """One LDA layer of spec 3.3."""

    def __init__(self, d: int, heads: int, f: int, eps: float):
        super().__init__()
        self.agg = CrossAttention(d, heads, eps, "norm_p", "norm_x")
        self.ffn_p = FFN(d, f, eps)
        self.disp = CrossAttention(d, heads, eps, "norm_x", "norm_p")
        self.ffn_x = FFN(d, f, eps)


class SASRecLayer(nn.Module):
    """One SASRec layer of spec 7."""

    def __init__(self, d: int, heads: int, f: int, eps: float):
        super().__init__()
        self.attn = SelfAttention(d, heads, eps)
        self.ffn_x = FFN(d, f, eps)


# --------------------------------------------------------------------------
# the two models
# --------------------------------------------------------------------------

class _Recommender(nn.Module):
    """What ELASTIC and SASRec share: embedding (3.1), user vector (3.4),
    scores and top-K (3.5), the training loss (5)."""

    def __init__(self, config: Dict[str, object], dropout: Optional[float] = None):
        super().__init__()
        if dropout is None:
            dropout = float(config.get("dropout", DEFAULT_DROPOUT))  # type: ignore[arg-type]
        self.config = resolve_config(config)
        c = self.config
        I, N, d = c["num_items"], c["max_len"], c["hidden"]
        self.item_emb = nn.Parameter(torch.zeros(I + 1 + c["mask_token"], d))  # spec 2, 3.0
        self.pos_emb = nn.Parameter(torch.zeros(N, d))
        self.final_norm = nn.LayerNorm(d, eps=c["ln_eps"])
        self.drop = nn.Dropout(dropout)  # spec 5: training only (nn.Dropout is off in eval)

    # ---------------------------------------------------------------- spec 3.1
    def _embed(self, items: torch.Tensor, lengths: torch.Tensor, place_mask: bool = True
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """X [B, n, d] and valid [B, n]; reads at most N columns.  A model with a
        mask token puts the mask id I+1 at recency 0 and the history after it
        (spec 3.0), unless place_mask is False (training inputs that hold the
        mask already)."""
        N = self.config["max_len"]
        if self.config["mask_token"] and place_mask:
            items = items.to(self.item_emb.device)
            mask = torch.full((items.shape[0], 1), self.config["num_items"] + 1,
                              dtype=items.dtype, device=items.device)
            items = torch.cat([mask, items[:, :N - 1]], dim=1)
            lengths = lengths.to(items.device) + 1
        items = items[:, :N].to(self.item_emb.device)
        lengths = lengths.to(items.device).clamp(max=N)
        if bool((lengths < 1).any()):
            raise ValueError("empty history")
        n = items.shape[1]
        valid = torch.arange(n, device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
        X = self.item_emb[items] + self.pos_emb[:n]          # X[r] = item_emb[s_r] + pos_emb[r]
        return self.drop(X), valid

    def _states(self, X: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- spec 3.4
    def forward(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """User vectors hu [B, d] = final_norm(X[0])."""
        X, valid = self._embed(items, lengths)
        X = self._states(X, valid)
        return self.final_norm(X[:, 0])

    # ---------------------------------------------------------------- spec 3.5
    def scores(self, hu: torch.Tensor) -> torch.Tensor:
        """[B, I]: column v-1 is score(v) = hu . item_emb[v] (never the mask, row I+1)."""
        return hu @ self.item_emb[1:self.config["num_items"] + 1].T

    @torch.no_grad()
    def recommend(self, items: torch.Tensor, lengths: torch.Tensor, k: int,
                  exclude: Optional[Sequence[Sequence[int]]] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k highest scores per user, ties by the smaller id, leaving out
        every item of exclude[b] (whole histories, not only the N items read).
        Returns ids [B, k] (1..I) and scores [B, k]; where fewer than k items
        remain the row is padded with id 0 and -inf (the C API's convention)."""
        sc = self.scores(self(items, lengths))
        B, I = sc.shape
        if exclude is not None:
            if len(exclude) != B:
                raise ValueError(f"exclude has {len(exclude)} histories for {B} users")
            sc = sc.clone()
            for b, hist in enumerate(exclude):
                ids = torch.tensor(sorted(set(int(v) for v in hist if 1 <= int(v) <= I)),
                                   dtype=torch.long, device=sc.device)
                sc[b, ids - 1] = float("-inf")
        order = top_indices(sc, min(k, I))               # ties by the smaller id
        top_sc = sc.gather(-1, order)
        top_ids = torch.where(torch.isneginf(top_sc), torch.zeros_like(order), order + 1)
        if k > I:
            pad = k - I
            top_ids = F.pad(top_ids, (0, pad), value=0)
            top_sc = F.pad(top_sc, (0, pad), value=float("-inf"))
        return top_ids, top_sc

    # ---------------------------------------------------------------- spec 5
    def loss(self, items: torch.Tensor, lengths: torch.Tensor,
             targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of softmax(score(v)) over v = 1..I against the
        target ids (1..I); dropout applies in train mode."""
        logits = self.scores(self(items, lengths))
        return F.cross_entropy(logits, targets.to(logits.device).long() - 1)

    def loss_positions(self, items: torch.Tensor, lengths: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
        """The position objectives of spec 5 (causal, cloze): items [B, n] in
        recency order as the model reads them (a cloze batch holds the mask id
        I+1 where it masked; no mask is placed), targets [B, n] the item each
        position is scored against, 0 for none.  Every position runs through
        the model; the scored ones are gathered before the score GEMM; the
        loss is the mean cross-entropy over them."""
        X, valid = self._embed(items, lengths, place_mask=False)
        H = self.final_norm(self._states(X, valid))                      # [B, n, d]
        t = targets.to(H.device).long()[:, :H.shape[1]]
        keep = t > 0
        return F.cross_entropy(self.scores(H[keep]), t[keep] - 1)

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Spec 5 initialisation: item_emb, pos_emb, imr.values and every Linear
        weight ~ N(0, 0.02^2), item_emb row 0 = 0; biases 0; LayerNorm 1 / 0;
        imr.subkeys ~ N(0, 1/(c/2))."""
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = self.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self
            if name == "imr.subkeys":
                p.normal_(0.0, math.sqrt(1.0 / (self.config["mem_key"] // 2)),
                          generator=generator)
            elif isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            else:  # item_emb, pos_emb, imr.values, Linear weights
                p.normal_(0.0, 0.02, generator=generator)
        self.item_emb[0].zero_()


class Elastic(_Recommender):
    """The ELASTIC model (spec 3)."""

    def __init__(self, config: Dict[str, object], dropout: Optional[float] = None):
        config = dict(config, model="elastic")
        super().__init__(config, dropout)
        c = self.config
        d, eps = c["hidden"], c["ln_eps"]
        self.imr = InterestMemory(d, c["experts"], c["mem_subkeys"], c["mem_key"],
                                  c["mem_topk"], eps)
        self.layers = nn.ModuleList(ElasticLayer(d, c["heads"], c["ffn"], eps)
                                    for _ in range(c["layers"]))
        self.reset_parameters()

    def _states(self, X, valid):
        P = self.imr(X, valid)                                            # spec 3.2
        agg_allowed = valid.unsqueeze(1)                                  # [B, 1, n]: padded keys out
        for layer in self.layers:                                         # spec 3.3, pre-LN
            P = P + self.drop(layer.agg(P, X, agg_allowed))               # aggregation
            P = P + self.drop(layer.ffn_p(P))
            X = X + self.drop(layer.disp(X, P))                           # dispatch
            X = X + self.drop(layer.ffn_x(X))
        return X


class SASRec(_Recommender):
    """The SASRec baseline (spec 7)."""

    def __init__(self, config: Dict[str, object], dropout: Optional[float] = None):
        config = dict(config, model="sasrec")
        super().__init__(config, dropout)
        c = self.config
        self.layers = nn.ModuleList(SASRecLayer(c["hidden"], c["heads"], c["ffn"], c["ln_eps"])
                                    for _ in range(c["layers"]))
        self.reset_parameters()

    def _states(self, X, valid):
        n = X.shape[1]
        r = torch.arange(n, device=X.device)
        causal = r.unsqueeze(0) >= r.unsqueeze(1)       # [query r, key r']: r' >= r
        # Padded keys are masked out; a padded query row keeps only itself so its
        # softmax stays finite (it is never read, and a NaN would poison gradients).
        allowed = causal & (valid.unsqueeze(1) | torch.eye(n, dtype=torch.bool, device=X.device))
        for layer in self.layers:
            X = X + self.drop(layer.attn(X, allowed))
            X = X + self.drop(layer.ffn_x(X))
        return X


# --------------------------------------------------------------------------
# spec 1 / 3: histories to a padded batch
# --------------------------------------------------------------------------

def batch(histories: Sequence[Sequence[int]], max_len: int, device="cpu",
          num_items: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(items LongTensor [B, n], lengths LongTensor [B]) for histories in time
    order (oldest first): only the most recent min(len, N) items are read, and
    items[b, r] is the item of recency r (column 0 = the most recent), padded
    with 0.  n is the longest history read.  With num_items, ids outside
    1..I are rejected."""
    if not histories:
        raise ValueError("no histories")
    rows = []
    for b, hist in enumerate(histories):
        hist = [int(v) for v in hist]
        if not hist:
            raise ValueError(f"user {b}: empty history")
        bad = [v for v in hist if v < 1 or (num_items is not None and v > num_items)]
        if bad:
            raise ValueError(f"user {b}: item id {bad[0]} outside 1..{num_items or 'I'}")
        rows.append(hist[::-1][:max_len])
    n = max(len(r) for r in rows)
    items = torch.zeros(len(rows), n, dtype=torch.long)
    for b, row in enumerate(rows):
        items[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return items.to(device), lengths.to(device)


# --------------------------------------------------------------------------
# spec 2: model files and state_dicts
# --------------------------------------------------------------------------

def build(config: Dict[str, object], dropout: Optional[float] = None) -> _Recommender:
    """A freshly initialised (spec 5) module of the config's `model`."""
    kind = config.get("model", "elastic")
    if kind == "elastic":
        return Elastic(config, dropout)
    if kind == "sasrec":
        return SASRec(config, dropout)
    raise ValueError(f"config key 'model': {kind!r} is neither 'elastic' nor 'sasrec'")


def from_state_dict(config: Dict[str, object], state_dict: Dict[str, torch.Tensor],
                    dropout: Optional[float] = None) -> _Recommender:
    """A module with exactly these parameters (names and shapes of spec 2 / 7);
    a missing, extra or misshapen tensor raises ValueError naming it."""
    module = build(config, dropout)
    own = module.state_dict()
    missing = [n for n in own if n not in state_dict]
    extra = [n for n in state_dict if n not in own]
    if missing or extra:
        raise ValueError(f"state_dict: missing {missing}, unexpected {extra}")
    for name, p in own.items():
        if tuple(state_dict[name].shape) != tuple(p.shape):
            raise ValueError(f"tensor '{name}' has shape {tuple(state_dict[name].shape)}, "
                             f"expected {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state_dict[name])  # dtype follows the module (float32 by default)
    return module


def load(path: str, device="cpu", dropout: Optional[float] = None, fast: bool = False
         ) -> _Recommender:
    """Reads a model file (spec 2): float32 tensors, config in __metadata__.
    fast=True: the fast inference port instead (libelastic.torch_fast.FastModel)."""
    from safetensors import safe_open
    tensors = {}
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata() or {})
        for name in f.keys():
            tensors[name] = f.get_tensor(name)
    config = config_from_metadata(meta)
    for name, value in tensors.items():
        if value.dtype != torch.float32:
            raise ValueError(f"tensor '{name}' is {value.dtype}, expected float32")
    module = from_state_dict(config, tensors, dropout)
    # the file's metadata (item-id map, provenance, ...)
    module.file_metadata = meta  # type: ignore[assignment]
    return _fast(module).to(device) if fast else module.to(device)


def save(module: _Recommender, path: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a model file the C library reads: float32 tensors under the spec's
    names, every config key as a string and format_version = 1 in __metadata__;
    extra metadata (strings) is kept, the config is authoritative for its keys."""
    from safetensors.torch import save_file
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(config_to_metadata(module.config))
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous()
               for name, t in module.state_dict().items()}
    save_file(tensors, path, metadata=meta)


# --------------------------------------------------------------------------
# the bridge to the C library (libelastic.Model)
# --------------------------------------------------------------------------

def to_torch(model: "Any", device: Any = "cpu", dropout: Optional[float] = None,
             fast: bool = False) -> _Recommender:
    """A torch module with exactly the weights of a libelastic.Model (float32
    copies), its config, and its metadata (item map included) in
    module.file_metadata, as load() gives for the model's file.  fast=True:
    the fast inference port instead (libelastic.torch_fast.FastModel)."""
    meta = dict(model.metadata)
    config: Dict[str, object] = dict(model.config)
    if dropout is None and "dropout" in meta:
        dropout = float(meta["dropout"])
    state = {name: torch.from_numpy(model.tensor(name)) for name in model.tensor_names}
    module = from_state_dict(config, state, dropout)
    file_meta = config_to_metadata(config)
    file_meta.update({k: v for k, v in meta.items() if k not in file_meta})
    module.file_metadata = file_meta  # type: ignore[assignment]
    return _fast(module).to(device) if fast else module.to(device)


def _fast(module: _Recommender) -> Any:
    """The fast port (python/libelastic/torch_fast.py) with the module's weights."""
    from .torch_fast import fast_from
    return fast_from(module)


def from_torch(module: _Recommender, metadata: Optional[Dict[str, str]] = None) -> "Any":
    """A libelastic.Model with exactly the module's weights (rounded to float32
    when the module is float64), its config, and the module's file_metadata plus
    `metadata` as extra metadata (config keys excepted): from_torch(to_torch(m))
    equals m bit for bit."""
    from .model import Model
    meta = {str(k): str(v) for k, v in dict(getattr(module, "file_metadata", {}) or {}).items()}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    out = Model.init_random(module.config, seed=0)
    try:
        state = module.state_dict()
        names = out.tensor_names
        if set(names) != set(state):
            raise ValueError(f"the module's tensors {sorted(state)} are not the model's "
                             f"{sorted(names)}")
        for name in names:
            out.set_tensor(name, state[name].detach().to("cpu", torch.float32).contiguous()
                           .numpy())
        for key, value in meta.items():
            if key not in CONFIG_KEYS and key != "format_version":
                out.set_metadata(key, value)
    except BaseException:
        out.close()
        raise
    return out


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _read_histories(stream) -> Tuple[List[int], List[List[int]]]:
    """One user per line, item ids oldest first separated by white space (as
    `elastic recommend` reads them); returns line numbers and histories."""
    lines, hists = [], []
    for no, text in enumerate(stream, 1):
        try:
            hists.append([int(tok) for tok in text.split()])
        except ValueError as exc:
            raise SystemExit(f"line {no}: not an item id ({exc})")
        lines.append(no)
    return lines, hists


def _load_checkpoint(path: str) -> Tuple[Dict[str, object], Dict[str, torch.Tensor]]:
    """A PyTorch checkpoint: torch.save({'config': dict, 'state_dict': ...})."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise SystemExit(f"{path}: expected a dict with 'config' and 'state_dict'")
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in ckpt["state_dict"].items()}
    return dict(ckpt["config"]), state


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recommend", help="top-K items per history line (like `elastic recommend`)")
    r.add_argument("model", help="model file (.safetensors)")
    r.add_argument("input", nargs="?", default="-", help="histories file, or - for stdin")
    r.add_argument("-k", "--top", type=int, default=10)
    r.add_argument("--include-history", action="store_true",
                   help="do not leave the user's own items out")
    r.add_argument("--device", default="cpu")
    r.add_argument("--batch", type=int, default=256)
    c = sub.add_parser("convert", help="model file <-> PyTorch checkpoint; the direction "
                       "follows the input's extension (.safetensors = model file)")
    c.add_argument("input")
    c.add_argument("output")
    args = ap.parse_args(argv)

    if args.cmd == "convert":
        if args.input.endswith(".safetensors"):
            module = load(args.input)
            meta = getattr(module, "file_metadata", {})
            config = dict(module.config)
            extra = {k: v for k, v in meta.items() if k not in CONFIG_KEYS + ("format_version",)}
            torch.save({"config": config, "state_dict": module.state_dict(),
                        "metadata": extra}, args.output)
        else:
            config, state = _load_checkpoint(args.input)
            ckpt = torch.load(args.input, map_location="cpu", weights_only=True)
            module = from_state_dict(config, state)
            save(module, args.output, ckpt.get("metadata"))
        print(f"wrote {args.output}")
        return 0

    module = load(args.model, args.device).eval()
    stream = sys.stdin if args.input == "-" else open(args.input)
    try:
        lines, hists = _read_histories(stream)
    finally:
        if stream is not sys.stdin:
            stream.close()
    I, N = module.config["num_items"], module.config["max_len"]
    for no, hist in zip(lines, hists):  # a blank line is an empty history: an error, as in C
        bad = [v for v in hist if not 1 <= v <= I]
        if not hist or bad:
            what = f"item id {bad[0]} outside 1..{I}" if bad else "empty history"
            print(f"{args.input} line {no}: {what}", file=sys.stderr)
            return 1
    for first in range(0, len(hists), args.batch):
        part = hists[first:first + args.batch]
        items, lengths = batch(part, N, args.device, num_items=I)
        ids, sc = module.recommend(items, lengths, args.top,
                                   None if args.include_history else part)
        for b in range(len(part)):
            cells = [f"{int(i)}:{float(s):.6g}" for i, s in zip(ids[b], sc[b]) if int(i) > 0]
            print(f"{lines[first + b]}\t" + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
