from recsys.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RerankRequest(_message.Message):
    __slots__ = ("user_id", "item_ids", "scores", "count", "diversity", "explain", "history_item_ids", "sources", "diversity_method", "graph_weight", "affinity", "affinity_weight")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_METHOD_FIELD_NUMBER: _ClassVar[int]
    GRAPH_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    count: int
    diversity: float
    explain: bool
    history_item_ids: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[_common_pb2.CandidateSource]
    diversity_method: _common_pb2.DiversityMethod
    graph_weight: float
    affinity: _containers.RepeatedScalarFieldContainer[float]
    affinity_weight: float
    def __init__(self, user_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ..., count: _Optional[int] = ..., diversity: _Optional[float] = ..., explain: _Optional[bool] = ..., history_item_ids: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[_Union[_common_pb2.CandidateSource, str]]] = ..., diversity_method: _Optional[_Union[_common_pb2.DiversityMethod, str]] = ..., graph_weight: _Optional[float] = ..., affinity: _Optional[_Iterable[float]] = ..., affinity_weight: _Optional[float] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("indices", "scores", "reasons", "bundle_version")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    bundle_version: str
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., reasons: _Optional[_Iterable[str]] = ..., bundle_version: _Optional[str] = ...) -> None: ...
