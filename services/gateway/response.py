"""The gateway's answers: items with their stage scores, source, reason and catalogue info; the trace
attributes that join an answer (and its impressions) to its trace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from opentelemetry import trace

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from services.common.catalogue import Catalogue
from services.gateway.stages import Candidates, Picks


class Answers:
    """Builds the answers of one bundle's catalogue."""

    def __init__(self, catalogue: Catalogue, item_pos: dict[str, int], bundle_version: str) -> None:
        self.catalogue = catalogue
        self.item_pos = item_pos
        self.bundle_version = bundle_version

    def info(self, item_id: str) -> common_pb2.ItemInfo:
        row = self.item_pos.get(item_id)
        if row is None:
            return common_pb2.ItemInfo()
        c = self.catalogue
        return common_pb2.ItemInfo(title=c.titles[row], genres=c.genres[row], year=int(c.years[row]))

    def items(
        self, cands: Candidates, ranking: np.ndarray, chosen: np.ndarray, picks: Picks, explain: bool
    ) -> list[gateway_pb2.RecommendedItem]:
        """`chosen`: positions into `cands`, in the order served; `picks` their final scores and reasons."""
        items = []
        for rank, pos in enumerate(chosen.tolist()):
            final = float(picks.scores[rank])
            items.append(
                gateway_pb2.RecommendedItem(
                    item_id=cands.item_ids[pos],
                    score=final,
                    stage_scores=gateway_pb2.StageScores(
                        retrieval=float(cands.retrieval[pos]), ranking=float(ranking[pos]), rerank=final
                    ),
                    source=cands.sources[pos],
                    reason=picks.reasons[rank] if explain else "",
                    info=self.info(cands.item_ids[pos]),
                )
            )
        return items

    def response(
        self, items: list[gateway_pb2.RecommendedItem], degraded: Sequence[common_pb2.Stage], cold: bool
    ) -> gateway_pb2.RecommendResponse:
        request_id = uuid.uuid4().hex
        span = trace.get_current_span()
        span.set_attribute("recsys.request_id", request_id)  # joins a response (and its impressions) to its trace
        span.set_attribute("recsys.items", len(items))
        span.set_attribute("recsys.cold_start", cold)
        span.set_attribute(
            "recsys.degraded_stages", [common_pb2.Stage.Name(d).removeprefix("STAGE_").lower() for d in degraded]
        )
        return gateway_pb2.RecommendResponse(
            items=items,
            bundle_version=self.bundle_version,
            request_id=request_id,
            degraded_stages=degraded,
            cold_start=cold,
        )
