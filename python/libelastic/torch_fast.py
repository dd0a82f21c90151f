#!/usr/bin/env python3
"""torch_fast.py - libelastic.torch_fast: the PyTorch port written for speed,
the strong peer of the C library's benchmarks (tools/bench/peers.py,
tools/bench/train_peers.py).  It computes the model of docs/spec/model.md as
libelastic.torch (the exact port, which the golden tests use) does, the way a
PyTorch engineer would write it for throughput:

- the last-layer shortcut of core/model/model_builder.c: hu reads X[0] alone,
  so the last layer carries only the most recent position through dispatch and
  FFN_x (ELASTIC) or self-attention and FFN_x (SASRec);
- F.scaled_dot_product_attention everywhere; one GEMM for the fused q/k/v
  projections of SASRec's self-attention, one for the fused k/v of ELASTIC's
  cross-attentions;
- the product-key sub-key scores as one GEMM per half, then the spec's tie
  rule (spec 3.2, decision 8.1: equal scores go to the smaller index / slot)
  applied to the GEMM's result by a stable sort (by ONNX TopK, which keeps
  the lower index first, when exporting);
- SASRec's causal attention without an [n, n] mask: each user's valid rows are
  laid out oldest first from row 0 (padding after them), so `is_causal=True`
  is exactly spec 7's mask (recency r sees r' >= r) and padded keys are never
  seen by a valid query;
- no Python loop over users, positions or experts (only over layers), and no
  data-dependent check, so torch.compile and the ONNX exporter see one graph.

Differences from the exact port (why it is not the default of the golden
tests): a GEMM may round a sub-key score differently in the last bit from the
exact port's product-and-sum, so equal sub-keys may not tie exactly and a
near-tie may select another slot (spec decision 8.7); lengths must be >= 1
(not checked).  Results agree with the C library within the conformance
tolerance (relative L2 per user < 1e-5), checked by python/tests/test_torch_fast.py.

API:
  fast_from(module) -> FastModel   a port module's weights in the fused layout (copies)
  FastModel(config, dropout)       freshly initialised (spec 5) fused model, for training
  m(items, lengths) -> hu [B, d]   items [B, n] recency order (column 0 newest), as
                                   libelastic.torch.batch gives; the mask is placed (3.0)
  m.scores(hu) -> [B, I];  m.loss_positions(items, lengths, targets) (spec 5, causal/cloze)
  export_onnx(m, items, lengths, path)   ONNX, static shapes (dynamo exporter at opset 23,
                                   SDPA as the ONNX Attention op; TorchScript as fallback)
libelastic.torch.load(path, fast=True) and to_torch(model, fast=True) return one.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .torch import DEFAULT_DROPOUT, FFN, resolve_config


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """[B, L, d] -> [B, h, L, d/h]."""
    B, L, d = x.shape
    return x.view(B, L, h, d // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[B, h, L, dh] -> [B, L, h*dh]."""
    B, h, L, dh = x.shape
    return x.transpose(1, 2).reshape(B, L, h * dh)


class CrossAttn(nn.Module):
    """MHA(LN_q(queries), LN_k(keys)) with k and v in one GEMM ([2d, d] weight)."""

    def __init__(self, d: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(d, eps=eps)
        self.norm_k = nn.LayerNorm(d, eps=eps)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.heads
        q = _heads(self.q(self.norm_q(queries)), h)
        k, v = self.kv(self.norm_k(keys)).chunk(2, dim=-1)
        if mask is not None:  # [B, 1, 1, n] -> [B, 1, Lq, n] (a view): ONNX Runtime's
            mask = mask.expand(-1, -1, q.shape[2], -1)  # Attention op does not broadcast Lq
        out = F.scaled_dot_product_attention(q, _heads(k, h), _heads(v, h), attn_mask=mask)
        return self.o(_merge(out))


class ElasticBlock(nn.Module):
    """One LDA layer (spec 3.3) in the fused layout."""

    def __init__(self, d: int, heads: int, f: int, eps: float):
        super().__init__()
        self.agg = CrossAttn(d, heads, eps)    # norm_q = agg.norm_p, norm_k = agg.norm_x
        self.ffn_p = FFN(d, f, eps)
        self.disp = CrossAttn(d, heads, eps)   # norm_q = disp.norm_x, norm_k = disp.norm_p
        self.ffn_x = FFN(d, f, eps)


class SASRecBlock(nn.Module):
    """One SASRec layer (spec 7): LN, fused q/k/v ([3d, d] weight), o, FFN_x."""

    def __init__(self, d: int, heads: int, f: int, eps: float):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ffn_x = FFN(d, f, eps)


class FastModel(nn.Module):
    """ELASTIC (spec 3) or SASRec (spec 7), fused layout, for inference and training."""

    def __init__(self, config: Dict[str, Any], dropout: Optional[float] = None):
        super().__init__()
        if dropout is None:
            dropout = float(config.get("dropout", DEFAULT_DROPOUT))
        self.config = c = resolve_config(config)
        self.p_drop = float(dropout)
        #: True while exporting to ONNX: top-t by TopK (ONNX keeps the lower index
        #: first on equal values, the spec's rule) instead of a stable sort.
        self.onnx_topk = False
        I, N, d, eps = c["num_items"], c["max_len"], c["hidden"], c["ln_eps"]
        self.sasrec = c["model"] == "sasrec"
        self.item_emb = nn.Parameter(torch.zeros(I + 1 + c["mask_token"], d))
        self.pos_emb = nn.Parameter(torch.zeros(N, d))
        self.final_norm = nn.LayerNorm(d, eps=eps)
        if self.sasrec:
            self.layers = nn.ModuleList(SASRecBlock(d, c["heads"], c["ffn"], eps)
                                        for _ in range(c["layers"]))
        else:
            k, m, kc = c["experts"], c["mem_subkeys"], c["mem_key"]
            self.imr_norm = nn.LayerNorm(d, eps=eps)
            self.imr_query = nn.Linear(d, k * kc)
            self.subkeys = nn.Parameter(torch.zeros(2, m, kc // 2))
            self.values = nn.Parameter(torch.zeros(m * m, d))
            self.layers = nn.ModuleList(ElasticBlock(d, c["heads"], c["ffn"], eps)
                                        for _ in range(c["layers"]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Spec 5 initialisation (as libelastic.torch's)."""
        for name, p in self.named_parameters():
            owner = self.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self
            if name == "subkeys":
                p.normal_(0.0, math.sqrt(1.0 / (self.config["mem_key"] // 2)),
                          generator=generator)
            elif isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=generator)
        self.item_emb[0].zero_()

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p_drop, self.training) if self.p_drop > 0 else x

    def _place_mask(self, items: torch.Tensor, lengths: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Spec 3.0 (mask at recency 0) and the N most recent columns."""
        N = self.config["max_len"]
        if self.config["mask_token"]:
            mask = torch.full_like(items[:, :1], self.config["num_items"] + 1)
            items = torch.cat([mask, items[:, :N - 1]], dim=1)
            lengths = lengths + 1
        return items[:, :N], lengths.clamp(max=N)

    # ------------------------------------------------------------ top-t, spec 3.2
    def _top(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Indices of the t largest of the last axis, largest first, equal values
        by the smaller index (spec 3.2)."""
        if self.onnx_topk:
            return torch.topk(x, t, dim=-1).indices
        return torch.sort(x, dim=-1, descending=True, stable=True).indices[..., :t]

    def _imr(self, X: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor
             ) -> torch.Tensor:
        """Spec 3.2: P [B, k, d]."""
        c = self.config
        B = X.shape[0]
        k, m, kc, t = c["experts"], c["mem_subkeys"], c["mem_key"], c["mem_topk"]
        w = valid.to(X.dtype).unsqueeze(1)                                  # [B, 1, n]
        u = self.imr_norm(torch.bmm(w, X).squeeze(1) / lengths.to(X.dtype).unsqueeze(1))
        Q = self.imr_query(u).view(B, k, kc)
        half = kc // 2
        sa = torch.matmul(Q[..., :half], self.subkeys[0].T)                 # [B, k, m], GEMM
        sb = torch.matmul(Q[..., half:], self.subkeys[1].T)
        # Indices ascending, so that the t*t grid below is in ascending slot order
        # and "ties by the smaller slot" (decision 8.1) is again "the smaller index".
        A = torch.sort(self._top(sa, t), dim=-1).values
        Bi = torch.sort(self._top(sb, t), dim=-1).values
        pair = (sa.gather(-1, A).unsqueeze(-1) + sb.gather(-1, Bi).unsqueeze(-2)).view(B, k, t * t)
        slot = (A.unsqueeze(-1) * m + Bi.unsqueeze(-2)).view(B, k, t * t)
        best = self._top(pair, t)
        wts = torch.softmax(pair.gather(-1, best), dim=-1)                  # [B, k, t]
        vals = F.embedding(slot.gather(-1, best), self.values)              # [B, k, t, d]
        return torch.matmul(wts.unsqueeze(-2), vals).squeeze(-2)            # [B, k, d]

    # ------------------------------------------------------------ spec 3 / 7
    def _elastic(self, items, lengths, all_positions: bool) -> torch.Tensor:
        """X after the layers: [B, n, d], or [B, 1, d] (row 0) with the shortcut."""
        n = items.shape[1]
        valid = torch.arange(n, device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
        X = self._drop(F.embedding(items, self.item_emb) + self.pos_emb[:n])
        P = self._imr(X, valid, lengths)
        key_mask = valid[:, None, None, :]                                  # [B, 1, 1, n]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            P = P + self._drop(layer.agg(P, X, key_mask))
            P = P + self._drop(layer.ffn_p(P))
            if i == last and not all_positions:
                X = X[:, :1]                                                # shortcut
            X = X + self._drop(layer.disp(X, P))
            X = X + self._drop(layer.ffn_x(X))
        return X

    def _time_order(self, items, lengths) -> torch.Tensor:
        """rec [B, n]: the recency read at row p; each user's valid rows oldest
        first from row 0, padded rows after them (they keep their own index)."""
        n = items.shape[1]
        p = torch.arange(n, device=items.device).unsqueeze(0)
        L = lengths.unsqueeze(1)
        return torch.where(p < L, L - 1 - p, p)

    def _sasrec(self, items, lengths, all_positions: bool):
        """X after the layers in time order [B, n, d], or [B, 1, d] (the newest
        row) with the shortcut; and rec (see _time_order)."""
        B, n = items.shape
        d, h = self.config["hidden"], self.config["heads"]
        rec = self._time_order(items, lengths)
        X = self._drop(F.embedding(items.gather(1, rec), self.item_emb)
                       + F.embedding(rec, self.pos_emb))
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer.norm(X)
            if i == last and not all_positions:
                newest = (lengths - 1).view(B, 1, 1).expand(B, 1, d)
                X = X.gather(1, newest)
                q = F.linear(z.gather(1, newest), layer.qkv.weight[:d], layer.qkv.bias[:d])
                k, v = F.linear(z, layer.qkv.weight[d:], layer.qkv.bias[d:]).chunk(2, dim=-1)
                keys = torch.arange(n, device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
                a = F.scaled_dot_product_attention(_heads(q, h), _heads(k, h), _heads(v, h),
                                                   attn_mask=keys[:, None, None, :])
            else:
                q, k, v = layer.qkv(z).chunk(3, dim=-1)
                a = F.scaled_dot_product_attention(_heads(q, h), _heads(k, h), _heads(v, h),
                                                   is_causal=True)
            X = X + self._drop(layer.o(_merge(a)))
            X = X + self._drop(layer.ffn_x(X))
        return X, rec

    def forward(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """hu [B, d] = final_norm(X[0]) (spec 3.4)."""
        items, lengths = self._place_mask(items, lengths)
        if self.sasrec:
            X, _ = self._sasrec(items, lengths, False)
        else:
            X = self._elastic(items, lengths, False)
        return self.final_norm(X[:, 0])

    def scores(self, hu: torch.Tensor) -> torch.Tensor:
        """[B, I] (spec 3.5; never the mask row)."""
        return hu @ self.item_emb[1:self.config["num_items"] + 1].T

    def loss_positions(self, items: torch.Tensor, lengths: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
        """Spec 5, objectives causal / cloze, as libelastic.torch's loss_positions:
        items [B, n] recency order (mask ids already in place), targets [B, n]
        (0: not scored); mean cross-entropy over the scored positions."""
        N = self.config["max_len"]
        items, lengths = items[:, :N], lengths.clamp(max=N)
        targets = targets[:, :items.shape[1]]
        if self.sasrec:
            X, rec = self._sasrec(items, lengths, True)
            targets = targets.gather(1, rec)
        else:
            X = self._elastic(items, lengths, True)
        keep = targets > 0
        H = self.final_norm(X[keep])                                        # [scored, d]
        return F.cross_entropy(self.scores(H), targets[keep] - 1)


def fast_from(module: nn.Module, dropout: Optional[float] = None) -> FastModel:
    """A FastModel with the weights of a libelastic.torch module (copies, in the
    fused layout), its config, dtype, device and file_metadata."""
    p = dict(module.state_dict())
    out = FastModel(module.config, module.drop.p if dropout is None else dropout)
    ref = p["item_emb"]
    out = out.to(device=ref.device, dtype=ref.dtype)
    s: Dict[str, torch.Tensor] = {"item_emb": p["item_emb"], "pos_emb": p["pos_emb"]}

    def ln(dst: str, src: str) -> None:
        s[dst + ".weight"], s[dst + ".bias"] = p[src + ".weight"], p[src + ".bias"]

    def lin(dst: str, *srcs: str) -> None:
        s[dst + ".weight"] = torch.cat([p[x + ".weight"] for x in srcs])
        s[dst + ".bias"] = torch.cat([p[x + ".bias"] for x in srcs])

    def ffn(dst: str, src: str) -> None:
        ln(dst + ".norm", src + ".norm")
        lin(dst + ".fc1", src + ".fc1")
        lin(dst + ".fc2", src + ".fc2")

    ln("final_norm", "final_norm")
    for i in range(module.config["layers"]):
        a = b = f"layers.{i}."   # the same prefix in both layouts
        if out.sasrec:
            ln(a + "norm", b + "attn.norm")
            lin(a + "qkv", b + "attn.q", b + "attn.k", b + "attn.v")
            lin(a + "o", b + "attn.o")
        else:
            for blk, qn, kn in (("agg", "norm_p", "norm_x"), ("disp", "norm_x", "norm_p")):
                ln(f"{a}{blk}.norm_q", f"{b}{blk}.{qn}")
                ln(f"{a}{blk}.norm_k", f"{b}{blk}.{kn}")
                lin(f"{a}{blk}.q", f"{b}{blk}.q")
                lin(f"{a}{blk}.kv", f"{b}{blk}.k", f"{b}{blk}.v")
                lin(f"{a}{blk}.o", f"{b}{blk}.o")
            ffn(a + "ffn_p", b + "ffn_p")
        ffn(a + "ffn_x", b + "ffn_x")
    if not out.sasrec:
        ln("imr_norm", "imr.norm")
        lin("imr_query", "imr.query")
        s["subkeys"], s["values"] = p["imr.subkeys"], p["imr.values"]
    out.load_state_dict(s, strict=True)
    out.file_metadata = dict(getattr(module, "file_metadata", {}) or {})  # type: ignore
    return out


def export_onnx(module: FastModel, items: torch.Tensor, lengths: torch.Tensor, path: str,
                exporter: str = "auto") -> str:
    """Exports module(items, lengths) -> hu to ONNX at path (the shapes of items
    fixed; inputs "items", "lengths", output "hu"); returns which exporter wrote
    it.  exporter "dynamo": torch.onnx's dynamo exporter at opset 23, whose
    SDPA becomes the ONNX Attention op (no [n, n] mask in the graph);
    "torchscript": the TorchScript exporter at opset 17 (SDPA decomposed into
    MatMul / Softmax with a materialised causal mask); "auto": dynamo, and
    TorchScript when that fails.  Top-t selections become ONNX TopK, whose
    equal values keep the lower index first: the spec's tie rule."""
    import contextlib
    import io
    import logging
    import warnings
    errors = []
    tries = {"auto": ("dynamo", "torchscript")}.get(exporter, (exporter,))
    module.onnx_topk = True
    try:
        for kind in tries:
            try:
                with torch.no_grad(), warnings.catch_warnings(), \
                        contextlib.redirect_stderr(io.StringIO()), \
                        contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    logging.disable(logging.WARNING)
                    try:
                        torch.onnx.export(module, (items, lengths), path,
                                          input_names=["items", "lengths"], output_names=["hu"],
                                          opset_version=23 if kind == "dynamo" else 17,
                                          dynamo=kind == "dynamo")
                    finally:
                        logging.disable(logging.NOTSET)
                return "dynamo exporter, opset 23" if kind == "dynamo" else \
                    "TorchScript exporter, opset 17"
            except Exception as exc:  # noqa: BLE001  (the next exporter is tried)
                errors.append(f"{kind}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
        raise RuntimeError("ONNX export failed: " + "; ".join(errors))
    finally:
        module.onnx_topk = False
