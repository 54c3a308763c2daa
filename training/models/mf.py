"""Matrix factorisation trained with BPR: the first retrieval model.

score(u, i) = <p_u, q_i> + b_i. Exported as user vectors [p_u, 1] and item vectors [q_i, b_i] so that one
inner product gives the full score and a Faiss inner-product index serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.loop import Batch, BatchLoss, EpochLoop, LocalContext, TrainContext, set_seed


@dataclass(frozen=True)
class MfConfig:
    dim: int = 64
    epochs: int = 40
    batch_size: int = 4096
    lr: float = 0.005
    weight_decay: float = 1e-5
    seed: int = 0


class BprMf(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user.weight, std=0.05)
        nn.init.normal_(self.item.weight, std=0.05)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) users, (B,) items -> (B,) scores."""
        return (self.user(users) * self.item(items)).sum(-1) + self.item_bias(items)[:, 0]

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_users, dim+1) user vectors and (n_items, dim+1) item vectors for inner-product search."""
        with torch.no_grad():
            users = torch.cat([self.user.weight, torch.ones(self.user.num_embeddings, 1)], dim=1)
            items = torch.cat([self.item.weight, self.item_bias.weight], dim=1)
        return users.numpy().astype(np.float32), items.numpy().astype(np.float32)


def train_bpr(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    config: MfConfig,
    ctx: TrainContext | None = None,
) -> BprMf:
    """Trains on (user index, item index) positives with one uniformly sampled negative each."""
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    model = BprMf(n_users, n_items, config.dim)
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr)
    u_all = torch.from_numpy(users.astype(np.int64))
    i_all = torch.from_numpy(items.astype(np.int64))
    n = len(users)

    def start_epoch(_order: np.ndarray) -> BatchLoss:
        neg_all = torch.from_numpy(rng.integers(0, n_items, n))  # one negative per positive, drawn per epoch

        def loss(batch: Batch) -> torch.Tensor:
            idx = batch.idx
            u, i, j = u_all[idx], i_all[idx], neg_all[idx]
            # One forward over positives and negatives together, so DDP sees a single graph per step.
            scores = trained(torch.cat([u, u]), torch.cat([i, j]))
            diff = scores[: len(idx)] - scores[len(idx) :]
            reg = model.user(u).pow(2).sum() + model.item(i).pow(2).sum() + model.item(j).pow(2).sum()
            return -torch.nn.functional.logsigmoid(diff).mean() + config.weight_decay * reg / len(idx)

        return loss

    EpochLoop("bpr_mf", config.epochs, config.batch_size, ctx, log_every=10).run(trained, opt, n, rng, start_epoch)
    return model  # DDP wraps this same module; its parameters are the trained ones
