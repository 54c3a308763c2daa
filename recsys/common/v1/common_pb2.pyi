import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_TYPE_UNSPECIFIED: _ClassVar[DeviceType]
    DEVICE_TYPE_DESKTOP: _ClassVar[DeviceType]
    DEVICE_TYPE_MOBILE: _ClassVar[DeviceType]
    DEVICE_TYPE_TABLET: _ClassVar[DeviceType]
    DEVICE_TYPE_TV: _ClassVar[DeviceType]

class CandidateSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANDIDATE_SOURCE_UNSPECIFIED: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_EMBEDDING: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_POPULAR: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_ITEM_NEIGHBOURS: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_BATCH: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_SEGMENT_POPULAR: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_TRENDING: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_FRESH: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_HISTORY_AFFINITY: _ClassVar[CandidateSource]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_FEATURES: _ClassVar[Stage]
    STAGE_CANDIDATE: _ClassVar[Stage]
    STAGE_RANKING: _ClassVar[Stage]
    STAGE_RERANK: _ClassVar[Stage]

class DiversityMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERSITY_METHOD_UNSPECIFIED: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_MMR: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_DPP: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_CALIBRATED: _ClassVar[DiversityMethod]
DEVICE_TYPE_UNSPECIFIED: DeviceType
DEVICE_TYPE_DESKTOP: DeviceType
DEVICE_TYPE_MOBILE: DeviceType
DEVICE_TYPE_TABLET: DeviceType
DEVICE_TYPE_TV: DeviceType
CANDIDATE_SOURCE_UNSPECIFIED: CandidateSource
CANDIDATE_SOURCE_EMBEDDING: CandidateSource
CANDIDATE_SOURCE_POPULAR: CandidateSource
CANDIDATE_SOURCE_ITEM_NEIGHBOURS: CandidateSource
CANDIDATE_SOURCE_BATCH: CandidateSource
CANDIDATE_SOURCE_SEGMENT_POPULAR: CandidateSource
CANDIDATE_SOURCE_TRENDING: CandidateSource
CANDIDATE_SOURCE_FRESH: CandidateSource
CANDIDATE_SOURCE_HISTORY_AFFINITY: CandidateSource
STAGE_UNSPECIFIED: Stage
STAGE_FEATURES: Stage
STAGE_CANDIDATE: Stage
STAGE_RANKING: Stage
STAGE_RERANK: Stage
DIVERSITY_METHOD_UNSPECIFIED: DiversityMethod
DIVERSITY_METHOD_MMR: DiversityMethod
DIVERSITY_METHOD_DPP: DiversityMethod
DIVERSITY_METHOD_CALIBRATED: DiversityMethod

class RequestContext(_message.Message):
    __slots__ = ("request_time", "device", "locale", "surface")
    REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    request_time: _timestamp_pb2.Timestamp
    device: DeviceType
    locale: str
    surface: str
    def __init__(self, request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device: _Optional[_Union[DeviceType, str]] = ..., locale: _Optional[str] = ..., surface: _Optional[str] = ...) -> None: ...

class ItemFilter(_message.Message):
    __slots__ = ("include_genres", "exclude_genres")
    INCLUDE_GENRES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_GENRES_FIELD_NUMBER: _ClassVar[int]
    include_genres: _containers.RepeatedScalarFieldContainer[str]
    exclude_genres: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, include_genres: _Optional[_Iterable[str]] = ..., exclude_genres: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemInfo(_message.Message):
    __slots__ = ("title", "genres", "year")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    title: str
    genres: _containers.RepeatedScalarFieldContainer[str]
    year: int
    def __init__(self, title: _Optional[str] = ..., genres: _Optional[_Iterable[str]] = ..., year: _Optional[int] = ...) -> None: ...

class UserFeatures(_message.Message):
    __slots__ = ("user_id", "age_bucket", "gender", "occupation", "zip_prefix", "interaction_count", "mean_rating", "recent_item_ids", "last_active_unix", "batch_item_ids", "segment", "segment_bundle_version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    OCCUPATION_FIELD_NUMBER: _ClassVar[int]
    ZIP_PREFIX_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_RATING_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_UNIX_FIELD_NUMBER: _ClassVar[int]
    BATCH_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    age_bucket: int
    gender: str
    occupation: str
    zip_prefix: str
    interaction_count: int
    mean_rating: float
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    last_active_unix: int
    batch_item_ids: _containers.RepeatedScalarFieldContainer[str]
    segment: int
    segment_bundle_version: str
    def __init__(self, user_id: _Optional[str] = ..., age_bucket: _Optional[int] = ..., gender: _Optional[str] = ..., occupation: _Optional[str] = ..., zip_prefix: _Optional[str] = ..., interaction_count: _Optional[int] = ..., mean_rating: _Optional[float] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., last_active_unix: _Optional[int] = ..., batch_item_ids: _Optional[_Iterable[str]] = ..., segment: _Optional[int] = ..., segment_bundle_version: _Optional[str] = ...) -> None: ...
