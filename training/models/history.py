"""A user's time-ordered history as model input: the latest items per user, every interaction as a target with
the items before it, and the encoders over such a history ("mean", "gru", "lstm" or a causal "transformer").
The two-tower query tower and the standalone sequence models share them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.data.interactions import Interactions

ENCODERS = ("mean", "gru", "lstm", "transformer")


def latest_histories(data: Interactions, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's most recent `max_len` items (oldest first, right-padded with -1) and their count."""
    indptr, items = data.seen_csr()
    hist = np.full((data.n_users, max_len), -1, dtype=np.int64)
    lengths = np.minimum(np.diff(indptr), max_len)
    for u in range(data.n_users):
        n = int(lengths[u])
        if n:
            hist[u, :n] = items[indptr[u + 1] - n : indptr[u + 1]]
    return hist, lengths.astype(np.int64)


@dataclass(frozen=True)
class SequenceExamples:
    """Every interaction as a target with the user's items strictly before it as history."""

    users: np.ndarray  # (n,)
    targets: np.ndarray  # (n,)
    timestamps: np.ndarray  # (n,)
    history: np.ndarray  # (n, L) item rows, right-padded with -1
    lengths: np.ndarray  # (n,)


def sequence_examples(data: Interactions, max_len: int) -> SequenceExamples:
    order = np.lexsort((data.item_idx, data.timestamps, data.user_idx))
    users, items, ts = data.user_idx[order], data.item_idx[order], data.timestamps[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=data.n_users))])[users]
    # Position of the first interaction of the same user at the same second: history ends before it.
    first_same = np.zeros(len(users), dtype=np.int64)
    new_group = np.ones(len(users), dtype=bool)
    new_group[1:] = (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])
    group_start = np.flatnonzero(new_group)
    first_same = group_start[np.cumsum(new_group) - 1]
    lengths = np.minimum(first_same - starts, max_len)
    offsets = np.arange(max_len)
    pos = first_same[:, None] - lengths[:, None] + offsets
    valid = offsets < lengths[:, None]
    history = np.where(valid, items[np.clip(pos, 0, len(items) - 1)], -1)
    return SequenceExamples(users, items, ts, history.astype(np.int64), lengths.astype(np.int64))


class CausalBlock(nn.Module):
    """Pre-norm self-attention block with a causal mask (SASRec), written out so that it exports to ONNX."""

    mask: torch.Tensor

    def __init__(self, dim: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)
        mask = torch.triu(torch.full((max_len, max_len), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, dim = x.shape[1], x.shape[2]
        dh = dim // self.heads
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q = q.reshape(-1, length, self.heads, dh).transpose(1, 2)
        k = k.reshape(-1, length, self.heads, dh).transpose(1, 2)
        v = v.reshape(-1, length, self.heads, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + self.mask[:length, :length], dim=-1)
        y = (att @ v).transpose(1, 2).reshape(-1, length, dim)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.ln2(x)))


class HistoryEncoder(nn.Module):
    """(B, L) right-padded item rows and (B,) lengths -> (B, dim); an empty history gives zeros."""

    offsets: torch.Tensor

    def __init__(self, n_items: int, dim: int, kind: str, max_len: int, layers: int, heads: int, dropout: float):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"unknown history encoder {kind!r}; expected one of {ENCODERS}")
        self.kind = kind
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.05)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.register_buffer("offsets", torch.arange(max_len, dtype=torch.int64))
        self.rnn: nn.Module | None = None
        self.blocks: nn.ModuleList | None = None
        if kind == "gru":
            self.rnn = nn.GRU(dim, dim, batch_first=True)
        elif kind == "lstm":
            self.rnn = nn.LSTM(dim, dim, batch_first=True)
        elif kind == "transformer":
            self.position = nn.Embedding(max_len, dim)
            nn.init.normal_(self.position.weight, std=0.02)
            self.blocks = nn.ModuleList(CausalBlock(dim, heads, max_len, dropout) for _ in range(layers))
            self.norm = nn.LayerNorm(dim)

    def forward(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        valid = self.offsets[: history.shape[1]].unsqueeze(0) < length.unsqueeze(1)  # (B, L)
        idx = torch.where(valid, history + 1, torch.zeros_like(history)).clamp(min=0)
        x = self.items(idx)  # padding rows are zero
        if self.kind == "mean":
            return x.sum(dim=1) / length.clamp(min=1).unsqueeze(1).to(x.dtype)
        if self.rnn is not None:
            h, _ = self.rnn(x)
        else:
            assert self.blocks is not None
            h = x + self.position.weight[: x.shape[1]].unsqueeze(0)
            for block in self.blocks:
                h = block(h)
            h = self.norm(h)
        last = (length - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, h.shape[2])
        out = h.gather(1, last)[:, 0]
        return out * (length > 0).unsqueeze(1).to(out.dtype)
