"""Every model by its one name: its config, its trainer, what a Ray job needs and what the evaluation harness needs.

Training (`python -m training.ray_jobs --model NAME`), the bundle pipeline and the evaluation harness
(`python -m training.evaluation --models NAME,...`) all read `MODELS`. Names are those of the bundle and the
training docs (`two_tower`, `wide_deep`, ...); a variant (another default config, e.g. a rating objective) is a
model of its own. Adding a model is one `ModelSpec` here.

A spec's `trainer` is the minibatch-SGD trainer, `trainer(*inputs(data, config), config, ctx)`, for the Ray
job and the pipeline; models without one (closed forms, neighbourhoods, counts) are evaluated only. Its
`recommender` builds the model under the evaluation protocol (training/models/base.py) from a config, and
for rankers over another model's candidates from that `retriever` too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from training.data.interactions import Interactions
from training.models import two_tower as tt
from training.models import two_tower_inference as tti
from training.models.autoencoder import (
    DLAE,
    EaseConfig,
    EaseRecommender,
    MultVaeConfig,
    MultVaeRecommender,
    train_mult_vae,
)
from training.models.base import Recommender
from training.models.baselines import BprMfRecommender, ItemKnnConfig, ItemKnnRecommender, PopularityRecommender
from training.models.dlrm import DlrmConfig, DlrmRecommender, train_dlrm
from training.models.lightgcn import LightGcnConfig, LightGcnRecommender, train_lightgcn
from training.models.mf import MfConfig, train_bpr
from training.models.ncf import NcfConfig, NcfRecommender, train_ncf
from training.models.ranker import (
    NegativeSampling,
    RankerConfig,
    build_ranker_features,
    ranker_examples,
    rating_examples,
    train_ranker,
)
from training.models.sequence import SequenceConfig, SequenceRecommender, train_sequence
from training.models.wide_deep import WideDeepConfig, WideDeepRecommender, train_wide_deep

Inputs = Callable[[Interactions, Any], tuple[Any, ...]]
Export = Callable[[nn.Module, Interactions, Path], list[str]]


class UnknownModel(ValueError):
    """A model name that is not in the table (the message lists the valid ones)."""


# --- a trainer's inputs from the Interactions ---------------------------------------------------------------


def index_arrays(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of trainers taking (users, items, n_users, n_items, config, ctx), like train_bpr."""
    return (data.user_idx, data.item_idx, data.n_users, data.n_items)


def whole(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of trainers taking (data: Interactions, config, ctx), like train_two_tower."""
    return (data,)


def ranking_examples(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of the rankers' trainers (batch, targets, cardinalities, config, ctx): every interaction as a
    positive with random negatives (config.sampling; no retriever, so no hard negatives), or the centred
    ratings for objective="rating". Built on each worker from the same seed, hence the same on all."""
    features = build_ranker_features(data)
    seed = int(getattr(config, "seed", 0))
    sampling = getattr(config, "sampling", NegativeSampling())
    if getattr(config, "objective", "implicit") == "rating":
        batch, targets = rating_examples(features, data, sampling.context_dropout, seed)
    else:
        batch, targets = ranker_examples(features, data, None, sampling, seed)
    return (batch, targets, features.contract.cardinalities())


# --- what a trained model leaves behind ---------------------------------------------------------------------


def export_arrays(model: nn.Module, data: Interactions, out: Path) -> list[str]:
    """Saves what `model.export()` returns: (user vectors, item vectors) or a dict of arrays, as
    embeddings.npz with the id vocabularies. Models without `export` are saved as their state_dict only."""
    exporter = getattr(model, "export", None)
    if exporter is None:
        return []
    exported = exporter()
    if isinstance(exported, dict):
        arrays = {k: np.asarray(v) for k, v in exported.items()}
    else:
        user_vectors, item_vectors = exported
        arrays = {"user_vectors": np.asarray(user_vectors), "item_vectors": np.asarray(item_vectors)}
    arrays["user_ids"] = np.asarray(data.user_ids, dtype=str)
    arrays["item_ids"] = np.asarray(data.item_ids, dtype=str)
    np.savez(out / "embeddings.npz", **arrays)  # type: ignore[arg-type]
    return ["embeddings.npz"]


def export_two_tower(model: nn.Module, data: Interactions, out: Path) -> list[str]:
    """Item-tower vectors of the catalogue and query vectors of every user (latest history, no context)."""
    assert isinstance(model, tt.TwoTowerModel)
    np.savez(
        out / "embeddings.npz",
        user_ids=np.asarray(data.user_ids, dtype=str),
        item_ids=np.asarray(data.item_ids, dtype=str),
        user_vectors=tti.user_vectors(model, data),
        item_vectors=tti.item_embeddings(model),
    )
    return ["embeddings.npz"]


# --- the table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str
    #: the default config (a frozen dataclass), None for a model without settings
    config: Any
    #: builds the model under the evaluation protocol: recommender(config), recommender() without a config,
    #: recommender(config, retriever=..., fit_retriever=...) with a `retriever`; None: not evaluated
    recommender: Callable[..., Recommender] | None
    #: the minibatch-SGD trainer, trainer(*inputs(data, config), config, ctx); None: evaluated only
    trainer: Callable[..., nn.Module] | None = None
    inputs: Inputs = whole
    export: Export = export_arrays
    #: for a ranker over another model's candidates: that model's name
    retriever: str | None = None
    #: evaluated when no --models are given (variants that cost time without adding much are opt-in)
    evaluated_by_default: bool = True

    def configured(self, seed: int, max_epochs: int | None = None) -> Any:
        """The default config with the given seed and its epochs capped at `max_epochs`, where it has those."""
        if self.config is None:
            return None
        fields = {f.name for f in dataclasses.fields(self.config)}
        changes: dict[str, Any] = {}
        if "seed" in fields:
            changes["seed"] = seed
        if max_epochs is not None and "epochs" in fields:
            changes["epochs"] = min(self.config.epochs, max_epochs)
        return dataclasses.replace(self.config, **changes)

    def build(self, config: Any, retriever: Recommender | None = None, fit_retriever: bool = True) -> Recommender:
        """The unfitted model for the evaluation harness."""
        if self.recommender is None:
            raise UnknownModel(f"{self.name} has no evaluation adapter")
        if self.retriever is not None:
            return self.recommender(config, retriever=retriever, fit_retriever=fit_retriever)
        return self.recommender(config) if config is not None else self.recommender()

    @property
    def implementation(self) -> str:
        """Where the evaluated model lives ("module:Class")."""
        target = self.recommender
        return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


_SPECS = (
    ModelSpec("popularity", None, PopularityRecommender),
    ModelSpec("item_knn", ItemKnnConfig(), ItemKnnRecommender),
    ModelSpec("bpr_mf", MfConfig(), BprMfRecommender, train_bpr, index_arrays),
    ModelSpec("ncf", NcfConfig(), NcfRecommender, train_ncf),
    ModelSpec("mult_vae", MultVaeConfig(), MultVaeRecommender, train_mult_vae),
    ModelSpec("ease", EaseConfig(), EaseRecommender),
    # The denoising linear autoencoder (Steck 2020) the pipeline serves as its item-to-item affinity.
    ModelSpec("dlae", DLAE, EaseRecommender),
    # The same without the user weighting, for comparison.
    ModelSpec("dlae_unweighted", EaseConfig(dropout=0.5), EaseRecommender, evaluated_by_default=False),
    ModelSpec("gru4rec", SequenceConfig(), SequenceRecommender, train_sequence),
    ModelSpec("lstm4rec", SequenceConfig(kind="lstm"), SequenceRecommender, train_sequence, evaluated_by_default=False),
    ModelSpec("two_tower", tt.TwoTowerConfig(), tti.TwoTowerRecommender, tt.train_two_tower, export=export_two_tower),
    ModelSpec(
        "two_tower_transformer",
        tt.TwoTowerConfig(encoder="transformer"),
        tti.TwoTowerRecommender,
        tt.train_two_tower,
        export=export_two_tower,
        evaluated_by_default=False,
    ),
    ModelSpec("lightgcn", LightGcnConfig(), LightGcnRecommender, train_lightgcn),
    ModelSpec("mlp_ranker", RankerConfig(), None, train_ranker, ranking_examples),
    ModelSpec("dlrm", DlrmConfig(), DlrmRecommender, train_dlrm, ranking_examples, retriever="two_tower"),
    ModelSpec(
        "dlrm_rating",
        DlrmConfig(objective="rating"),
        DlrmRecommender,
        train_dlrm,
        ranking_examples,
        retriever="two_tower",
    ),
    ModelSpec(
        "wide_deep", WideDeepConfig(), WideDeepRecommender, train_wide_deep, ranking_examples, retriever="two_tower"
    ),
    ModelSpec(
        "wide_deep_rating",
        WideDeepConfig(objective="rating"),
        WideDeepRecommender,
        train_wide_deep,
        ranking_examples,
        retriever="two_tower",
    ),
)

MODELS: Mapping[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def trainable(models: Mapping[str, ModelSpec] = MODELS) -> list[str]:
    """The names of the models with an SGD trainer (what a Ray job can train)."""
    return [name for name, spec in models.items() if spec.trainer is not None]


def evaluable(models: Mapping[str, ModelSpec] = MODELS) -> list[str]:
    """The names of the models the evaluation harness can build."""
    return [name for name, spec in models.items() if spec.recommender is not None]


def lookup(name: str, valid: list[str] | None = None, models: Mapping[str, ModelSpec] = MODELS) -> ModelSpec:
    """The spec of `name`; UnknownModel naming the valid choices (`valid`, default all) otherwise."""
    choices = list(models) if valid is None else valid
    if name not in choices:
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(choices)}")
    return models[name]
