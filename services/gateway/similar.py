"""SimilarItems: the candidate stage's item-to-item neighbours, with catalogue info. Unlike Recommend it has no
fallback: an unknown item is NOT_FOUND, a candidate stage that is down is UNAVAILABLE."""

from __future__ import annotations

import grpc

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.gateway.v1 import gateway_pb2
from services.common.errors import NotFound, Unavailable
from services.common.validation import check_count, check_id
from services.gateway.response import Answers


class SimilarItems:
    def __init__(
        self, stub: candidate_pb2_grpc.CandidateServiceStub, answers: Answers, max_count: int, timeout_ms: int
    ) -> None:
        self.stub = stub
        self.answers = answers
        self.max_count = max_count
        self.timeout_s = timeout_ms / 1000

    async def __call__(self, request: gateway_pb2.SimilarItemsRequest) -> gateway_pb2.SimilarItemsResponse:
        item_id = check_id("item_id", request.item_id)
        count = check_count("count", request.count, self.max_count)
        if item_id not in self.answers.item_pos:
            raise NotFound(f"item {item_id!r} is not in the catalogue")
        try:
            reply = await self.stub.SimilarItems(
                candidate_pb2.SimilarItemsRequest(item_id=item_id, count=count), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or f"item {item_id!r} is not in the catalogue") from exc
            raise Unavailable(f"similar items are unavailable: the candidate stage answered {exc.code().name}") from exc
        return gateway_pb2.SimilarItemsResponse(
            items=[
                gateway_pb2.SimilarItem(item_id=i, score=score, info=self.answers.info(i))
                for i, score in zip(reply.item_ids, reply.scores, strict=True)
            ],
            bundle_version=reply.bundle_version,
        )
