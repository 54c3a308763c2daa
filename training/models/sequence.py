"""Next-item model in the style of GRU4Rec (Hidasi et al., 2016): a GRU (or LSTM) over the user's most recent
items predicts the next one with a softmax over all items; scoring feeds the user's latest history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.data.interactions import Interactions
from training.loop import Batch, EpochLoop, LocalContext, TrainContext, each_batch, set_seed, unwrap
from training.models.history import HistoryEncoder, latest_histories, sequence_examples


@dataclass(frozen=True)
class SequenceConfig:
    kind: str = "gru"  # "gru" or "lstm" (the two-tower's history encoders)
    dim: int = 64
    history_len: int = 30
    dropout: float = 0.2
    epochs: int = 8
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0


class SequenceModel(nn.Module):
    def __init__(self, n_items: int, config: SequenceConfig) -> None:
        super().__init__()
        if config.kind not in ("gru", "lstm"):
            raise ValueError(f"unknown sequence model {config.kind!r}; expected gru or lstm")
        self.encoder = HistoryEncoder(n_items, config.dim, config.kind, config.history_len, 1, 1, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.dim, n_items)

    def forward(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded item rows and (B,) lengths -> (B, n_items) next-item logits."""
        return self.out(self.drop(self.encoder(history, length)))


def train_sequence(data: Interactions, config: SequenceConfig, ctx: TrainContext | None = None) -> SequenceModel:
    """Every interaction is a target, with the user's items strictly before it as history."""
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    model = SequenceModel(data.n_items, config)
    ex = sequence_examples(data, config.history_len)
    keep = ex.lengths > 0  # nothing to predict from an empty history
    history = torch.from_numpy(ex.history[keep])
    lengths = torch.from_numpy(ex.lengths[keep])
    targets = torch.from_numpy(ex.targets[keep])
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def loss(batch: Batch) -> torch.Tensor:
        idx = batch.idx
        return F.cross_entropy(trained(history[idx], lengths[idx]), targets[idx])

    EpochLoop("gru4rec" if config.kind == "gru" else f"{config.kind}4rec", config.epochs, config.batch_size, ctx).run(
        trained, opt, len(targets), rng, each_batch(loss)
    )
    result = unwrap(trained)
    assert isinstance(result, SequenceModel)
    result.eval()
    return result


class SequenceRecommender:
    name = "gru4rec"

    def __init__(self, config: SequenceConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or SequenceConfig()
        self.ctx = ctx
        if self.config.kind != "gru":
            self.name = f"{self.config.kind}4rec"
        self.model: SequenceModel | None = None
        self.history: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.model = train_sequence(train, self.config, self.ctx)
        self.history = latest_histories(train, self.config.history_len)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.model is None or self.history is None:
            raise RuntimeError(f"{self.name} is not fitted")
        users = np.asarray(users)
        with torch.no_grad():
            logits = self.model(torch.from_numpy(self.history[0][users]), torch.from_numpy(self.history[1][users]))
        return logits.numpy().astype(np.float32)
