import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Rounding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUNDING_UNSPECIFIED: _ClassVar[Rounding]
    ROUNDING_DOWN: _ClassVar[Rounding]
    ROUNDING_UP: _ClassVar[Rounding]
    ROUNDING_NEAREST: _ClassVar[Rounding]

class BoostStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOST_STATUS_UNSPECIFIED: _ClassVar[BoostStatus]
    BOOST_STATUS_SCHEDULED: _ClassVar[BoostStatus]
    BOOST_STATUS_ACTIVE: _ClassVar[BoostStatus]
    BOOST_STATUS_ENDED: _ClassVar[BoostStatus]
    BOOST_STATUS_ARCHIVED: _ClassVar[BoostStatus]

class IssueSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ISSUE_SEVERITY_UNSPECIFIED: _ClassVar[IssueSeverity]
    ISSUE_SEVERITY_ERROR: _ClassVar[IssueSeverity]
    ISSUE_SEVERITY_WARNING: _ClassVar[IssueSeverity]
ROUNDING_UNSPECIFIED: Rounding
ROUNDING_DOWN: Rounding
ROUNDING_UP: Rounding
ROUNDING_NEAREST: Rounding
BOOST_STATUS_UNSPECIFIED: BoostStatus
BOOST_STATUS_SCHEDULED: BoostStatus
BOOST_STATUS_ACTIVE: BoostStatus
BOOST_STATUS_ENDED: BoostStatus
BOOST_STATUS_ARCHIVED: BoostStatus
ISSUE_SEVERITY_UNSPECIFIED: IssueSeverity
ISSUE_SEVERITY_ERROR: IssueSeverity
ISSUE_SEVERITY_WARNING: IssueSeverity

class Boost(_message.Message):
    __slots__ = ("id", "system_key", "user_id", "name", "multiplier", "rounding", "start_time", "end_time", "user_attributes", "status", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    system_key: str
    user_id: str
    name: str
    multiplier: float
    rounding: Rounding
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    user_attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    status: BoostStatus
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., name: _Optional[str] = ..., multiplier: _Optional[float] = ..., rounding: _Optional[_Union[Rounding, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., status: _Optional[_Union[BoostStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateBoostsRequest(_message.Message):
    __slots__ = ("system_key", "boosts")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    BOOSTS_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    boosts: _containers.RepeatedCompositeFieldContainer[Boost]
    def __init__(self, system_key: _Optional[str] = ..., boosts: _Optional[_Iterable[_Union[Boost, _Mapping]]] = ...) -> None: ...

class CreateBoostsResponse(_message.Message):
    __slots__ = ("created", "issues")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    created: _containers.RepeatedCompositeFieldContainer[Boost]
    issues: _containers.RepeatedCompositeFieldContainer[BoostIssue]
    def __init__(self, created: _Optional[_Iterable[_Union[Boost, _Mapping]]] = ..., issues: _Optional[_Iterable[_Union[BoostIssue, _Mapping]]] = ...) -> None: ...

class BoostIssue(_message.Message):
    __slots__ = ("index", "user_id", "severity", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    user_id: str
    severity: IssueSeverity
    message: str
    def __init__(self, index: _Optional[int] = ..., user_id: _Optional[str] = ..., severity: _Optional[_Union[IssueSeverity, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ListBoostsRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "statuses", "page_size", "page_token")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    statuses: _containers.RepeatedScalarFieldContainer[BoostStatus]
    page_size: int
    page_token: str
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[BoostStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBoostsResponse(_message.Message):
    __slots__ = ("boosts", "next_page_token")
    BOOSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    boosts: _containers.RepeatedCompositeFieldContainer[Boost]
    next_page_token: str
    def __init__(self, boosts: _Optional[_Iterable[_Union[Boost, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ArchiveBoostRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ArchiveBoostResponse(_message.Message):
    __slots__ = ("boost",)
    BOOST_FIELD_NUMBER: _ClassVar[int]
    boost: Boost
    def __init__(self, boost: _Optional[_Union[Boost, _Mapping]] = ...) -> None: ...

class GetMultiplierRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "time")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetMultiplierResponse(_message.Message):
    __slots__ = ("multiplier", "boosts")
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    BOOSTS_FIELD_NUMBER: _ClassVar[int]
    multiplier: float
    boosts: _containers.RepeatedCompositeFieldContainer[Boost]
    def __init__(self, multiplier: _Optional[float] = ..., boosts: _Optional[_Iterable[_Union[Boost, _Mapping]]] = ...) -> None: ...
