"""Autoencoders over each user's bag of items.

* Mult-VAE (Liang et al., 2018): a variational autoencoder with a multinomial likelihood, input dropout and KL
  annealing up to `beta`.
* EASE (Steck, WWW 2019): the "embarrassingly shallow" linear autoencoder, an item-to-item weight matrix in
  closed form. The served pipeline ships it as the `item_affinity` component for catalogues up to
  `EASE_MAX_ITEMS` items: the candidate service scores each candidate against the user's whole history with it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.data.interactions import Interactions
from training.loop import Batch, EpochLoop, LocalContext, TrainContext, each_batch, set_seed, unwrap


@dataclass(frozen=True)
class MultVaeConfig:
    hidden: tuple[int, ...] = (600,)
    latent: int = 200
    dropout: float = 0.5
    beta: float = 0.2
    anneal_steps: int = 2000  # updates over which the KL weight grows to beta
    epochs: int = 150
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


class MultVae(nn.Module):
    def __init__(self, n_items: int, config: MultVaeConfig) -> None:
        super().__init__()
        enc = [n_items, *config.hidden]
        self.encoder = nn.Sequential(*(m for a, b in itertools.pairwise(enc) for m in (nn.Linear(a, b), nn.Tanh())))
        self.mu = nn.Linear(enc[-1], config.latent)
        self.logvar = nn.Linear(enc[-1], config.latent)
        dec = [config.latent, *reversed(config.hidden), n_items]
        layers: list[nn.Module] = []
        for j, (a, b) in enumerate(itertools.pairwise(dec)):
            layers.append(nn.Linear(a, b))
            if j < len(dec) - 2:
                layers.append(nn.Tanh())
        self.decoder = nn.Sequential(*layers)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_items) 0/1 rows -> item logits (B, n_items) and the KL divergence per row (B,)."""
        h = self.encoder(self.drop(F.normalize(x, dim=1)))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1).sum(dim=1)
        return self.decoder(z), kl


def train_mult_vae(data: Interactions, config: MultVaeConfig, ctx: TrainContext | None = None) -> MultVae:
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    matrix = torch.from_numpy(data.user_item_matrix())
    model = MultVae(data.n_items, config)
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def loss(batch: Batch) -> torch.Tensor:
        x = matrix[batch.idx]
        logits, kl = trained(x)
        beta = config.beta * min(1.0, batch.step / max(config.anneal_steps, 1))  # KL annealing over the updates
        return (-(F.log_softmax(logits, dim=1) * x).sum(dim=1) + beta * kl).mean()

    EpochLoop("mult_vae", config.epochs, config.batch_size, ctx, log_every=25).run(
        trained, opt, data.n_users, rng, each_batch(loss)
    )
    result = unwrap(trained)
    assert isinstance(result, MultVae)
    result.eval()
    return result


class MultVaeRecommender:
    name = "mult_vae"

    def __init__(self, config: MultVaeConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or MultVaeConfig()
        self.ctx = ctx
        self.model: MultVae | None = None
        self.matrix: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.model = train_mult_vae(train, self.config, self.ctx)
        self.matrix = train.user_item_matrix()

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.model is None or self.matrix is None:
            raise RuntimeError("mult_vae is not fitted")
        with torch.no_grad():
            logits, _ = self.model(torch.from_numpy(self.matrix[np.asarray(users)]))
        return logits.numpy().astype(np.float32)


EASE_MAX_ITEMS = 5_000  # dense (n_items, n_items) weights: 100 MB of float32 at this size


@dataclass(frozen=True)
class EaseConfig:
    l2: float = 300.0  # lambda of the closed form (chosen on the validation part of the random split)
    # > 0: the denoising linear autoencoder (DLAE, Steck, NeurIPS 2020) instead of EASE: trained to
    # reconstruct X from X with each entry dropped with this probability, which in closed form penalises
    # each item's self-weight by p/(1-p)·diag(XᵀX) instead of forcing it to 0.
    dropout: float = 0.0
    # > 0: each user's row enters XᵀX with weight n_u^-γ (n_u: the user's items), so that the co-occurrences of
    # a few heavy users do not dominate the item-to-item weights (the item-item analogue of inverse user
    # frequency). The weights are scaled so that trace(XᵀX), and with it lambda's meaning, is unchanged.
    user_weight_exponent: float = 0.0
    chunk_users: int = 8_192  # users per block while accumulating the item Gram matrix


#: The served item-to-item weights: DLAE with dropout 0.5, lambda 300 and users weighted by n_u^-0.5, chosen by
#: NDCG@10 on the validation part of the random split over EASE (lambda 200-500), DLAE (dropout 0.1-0.7, lambda
#: 10-300) and the user weighting (exponent 0-0.5); docs/evaluation.md.
DLAE = EaseConfig(l2=300.0, dropout=0.5, user_weight_exponent=0.5)


def ease_weights(data: Interactions, config: EaseConfig | None = None) -> np.ndarray:
    """EASE: B = I - P diag(1/diag(P)) with P = (XᵀX + lambda I)⁻¹, so diag(B) = 0. With `dropout` p > 0, DLAE:
    B = (XᵀX + Λ)⁻¹ XᵀX with Λ = diag(p/(1-p)·diag(XᵀX) + lambda). (n_items, n_items) float32. XᵀX is
    accumulated over blocks of users, so memory is O(n_items²), not O(n_users · n_items)."""
    config = config or EaseConfig()
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    if config.user_weight_exponent < 0:
        raise ValueError(f"user_weight_exponent must be >= 0, got {config.user_weight_exponent}")
    if data.n_items > EASE_MAX_ITEMS:
        raise ValueError(f"EASE is dense: {data.n_items} items is more than {EASE_MAX_ITEMS}")
    gram = np.zeros((data.n_items, data.n_items), dtype=np.float64)
    order = np.argsort(data.user_idx, kind="stable")
    users, items = data.user_idx[order], data.item_idx[order]
    exponent = config.user_weight_exponent
    interactions = weighted_interactions = 0.0  # sum_u n_u and sum_u w_u n_u, to keep the trace
    for start in range(0, data.n_users, config.chunk_users):
        lo, hi = np.searchsorted(users, [start, start + config.chunk_users])
        block = np.zeros((min(config.chunk_users, data.n_users - start), data.n_items), dtype=np.float32)
        block[users[lo:hi] - start, items[lo:hi]] = 1.0
        if exponent > 0:
            per_user = block.sum(axis=1)  # distinct items: repeated pairs are one entry of the block
            w = np.power(per_user, -exponent, where=per_user > 0, out=np.zeros_like(per_user))
            interactions += float(per_user.sum())
            weighted_interactions += float((w * per_user).sum())
            gram += (block * w[:, None]).T @ block
        else:
            gram += block.T @ block
    if weighted_interactions > 0:
        gram *= interactions / weighted_interactions
    if config.dropout > 0:
        penalty = config.dropout / (1.0 - config.dropout) * np.diag(gram) + config.l2
        dlae = np.linalg.solve(gram + np.diag(penalty), gram)
        return dlae.astype(np.float32)
    gram[np.diag_indices_from(gram)] += config.l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


class EaseRecommender:
    """score(u, j) = sum over u's training items i of B[i, j]."""

    name = "ease"

    def __init__(self, config: EaseConfig | None = None) -> None:
        self.config = config or EaseConfig()
        self.matrix: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.matrix = train.user_item_matrix()
        self.weights = ease_weights(train, self.config)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.matrix is None or self.weights is None:
            raise RuntimeError("ease is not fitted")
        return (self.matrix[np.asarray(users)] @ self.weights).astype(np.float32)
