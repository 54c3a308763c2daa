"""The settings of one pipeline run: every served model's config, and which ranker ships."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from training.models import two_tower as tt
from training.models.autoencoder import DLAE, EaseConfig
from training.models.dlrm import DlrmConfig
from training.models.lightgcn import LightGcnConfig
from training.models.segments import SegmentConfig
from training.models.wide_deep import WideDeepConfig

Ranker = Literal["dlrm", "wide_deep"]
#: The rankers the bundle can ship (names of the model table).
RANKERS: tuple[str, ...] = get_args(Ranker)


@dataclass(frozen=True)
class PipelineConfig:
    retrieval: tt.TwoTowerConfig = field(default_factory=tt.TwoTowerConfig)
    ranker: Ranker = "dlrm"
    dlrm: DlrmConfig = field(default_factory=DlrmConfig)
    wide_deep: WideDeepConfig = field(default_factory=WideDeepConfig)
    graph: LightGcnConfig = field(default_factory=LightGcnConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    item_affinity: EaseConfig | None = DLAE  # None: no item_affinity component

    @property
    def ranker_config(self) -> DlrmConfig | WideDeepConfig:
        return self.dlrm if self.ranker == "dlrm" else self.wide_deep

    def with_seed(self, seed: int) -> PipelineConfig:
        return replace(
            self,
            retrieval=replace(self.retrieval, seed=seed),
            dlrm=replace(self.dlrm, seed=seed),
            wide_deep=replace(self.wide_deep, seed=seed),
            graph=replace(self.graph, seed=seed),
            segments=replace(self.segments, seed=seed),
        )

    def with_epochs(self, cap: int) -> PipelineConfig:
        """Every model's epochs capped at `cap` (smoke runs and tests)."""
        return replace(
            self,
            retrieval=replace(self.retrieval, epochs=min(self.retrieval.epochs, cap)),
            dlrm=replace(self.dlrm, epochs=min(self.dlrm.epochs, cap)),
            wide_deep=replace(self.wide_deep, epochs=min(self.wide_deep.epochs, cap)),
            graph=replace(self.graph, epochs=min(self.graph.epochs, cap)),
        )
