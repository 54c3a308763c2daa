import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from recsys.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_TYPE_UNSPECIFIED: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_VIEW: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_CLICK: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_RATING: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_PURCHASE: _ClassVar[FeedbackType]
FEEDBACK_TYPE_UNSPECIFIED: FeedbackType
FEEDBACK_TYPE_VIEW: FeedbackType
FEEDBACK_TYPE_CLICK: FeedbackType
FEEDBACK_TYPE_RATING: FeedbackType
FEEDBACK_TYPE_PURCHASE: FeedbackType

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "context", "count", "filter", "exclude_item_ids", "diversity", "explain", "diversity_method", "graph_weight", "affinity_weight")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_METHOD_FIELD_NUMBER: _ClassVar[int]
    GRAPH_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    context: _common_pb2.RequestContext
    count: int
    filter: _common_pb2.ItemFilter
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    diversity: float
    explain: bool
    diversity_method: _common_pb2.DiversityMethod
    graph_weight: float
    affinity_weight: float
    def __init__(self, user_id: _Optional[str] = ..., context: _Optional[_Union[_common_pb2.RequestContext, _Mapping]] = ..., count: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.ItemFilter, _Mapping]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., diversity: _Optional[float] = ..., explain: _Optional[bool] = ..., diversity_method: _Optional[_Union[_common_pb2.DiversityMethod, str]] = ..., graph_weight: _Optional[float] = ..., affinity_weight: _Optional[float] = ...) -> None: ...

class StageScores(_message.Message):
    __slots__ = ("retrieval", "ranking", "rerank")
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    retrieval: float
    ranking: float
    rerank: float
    def __init__(self, retrieval: _Optional[float] = ..., ranking: _Optional[float] = ..., rerank: _Optional[float] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "stage_scores", "source", "reason", "info")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STAGE_SCORES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    stage_scores: StageScores
    source: _common_pb2.CandidateSource
    reason: str
    info: _common_pb2.ItemInfo
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., stage_scores: _Optional[_Union[StageScores, _Mapping]] = ..., source: _Optional[_Union[_common_pb2.CandidateSource, str]] = ..., reason: _Optional[str] = ..., info: _Optional[_Union[_common_pb2.ItemInfo, _Mapping]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "bundle_version", "request_id", "degraded_stages", "cold_start")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_STAGES_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    bundle_version: str
    request_id: str
    degraded_stages: _containers.RepeatedScalarFieldContainer[_common_pb2.Stage]
    cold_start: bool
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., bundle_version: _Optional[str] = ..., request_id: _Optional[str] = ..., degraded_stages: _Optional[_Iterable[_Union[_common_pb2.Stage, str]]] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "count")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    count: int
    def __init__(self, item_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class SimilarItem(_message.Message):
    __slots__ = ("item_id", "score", "info")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    info: _common_pb2.ItemInfo
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., info: _Optional[_Union[_common_pb2.ItemInfo, _Mapping]] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "bundle_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SimilarItem]
    bundle_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[SimilarItem, _Mapping]]] = ..., bundle_version: _Optional[str] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "item_id", "type", "value", "timestamp", "context")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    item_id: str
    type: FeedbackType
    value: float
    timestamp: _timestamp_pb2.Timestamp
    context: _common_pb2.RequestContext
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[_Union[FeedbackType, str]] = ..., value: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Union[_common_pb2.RequestContext, _Mapping]] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class RejectedEvent(_message.Message):
    __slots__ = ("index", "event_id", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEvent]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedEvent, _Mapping]]] = ...) -> None: ...
