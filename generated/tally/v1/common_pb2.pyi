import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_VALIDATION_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_IDEMPOTENCY_KEY_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_IDEMPOTENCY_KEY_MISMATCH: _ClassVar[ErrorReason]
    ERROR_REASON_SYSTEM_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_USER_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_TRIGGER_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_LEVEL_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_BOOST_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_ENTRY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_NO_MATCHING_TRIGGER: _ClassVar[ErrorReason]
    ERROR_REASON_SYSTEM_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_LEVEL_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_IDEMPOTENCY_KEY_REUSED: _ClassVar[ErrorReason]
    ERROR_REASON_INSUFFICIENT_POINTS: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_REVERSED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_REVERSIBLE: _ClassVar[ErrorReason]
    ERROR_REASON_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_REVOKED: _ClassVar[ErrorReason]
    ERROR_REASON_SCOPE_INSUFFICIENT: _ClassVar[ErrorReason]
    ERROR_REASON_STORE_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_TOKEN_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_TOKEN_EXPIRED: _ClassVar[ErrorReason]

class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_TYPE_UNSPECIFIED: _ClassVar[EntryType]
    ENTRY_TYPE_AWARD: _ClassVar[EntryType]
    ENTRY_TYPE_DEDUCT: _ClassVar[EntryType]
    ENTRY_TYPE_EXPIRE: _ClassVar[EntryType]
    ENTRY_TYPE_REVERSAL: _ClassVar[EntryType]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_VALIDATION_FAILED: ErrorReason
ERROR_REASON_IDEMPOTENCY_KEY_INVALID: ErrorReason
ERROR_REASON_IDEMPOTENCY_KEY_MISMATCH: ErrorReason
ERROR_REASON_SYSTEM_NOT_FOUND: ErrorReason
ERROR_REASON_USER_NOT_FOUND: ErrorReason
ERROR_REASON_TRIGGER_NOT_FOUND: ErrorReason
ERROR_REASON_LEVEL_NOT_FOUND: ErrorReason
ERROR_REASON_BOOST_NOT_FOUND: ErrorReason
ERROR_REASON_ENTRY_NOT_FOUND: ErrorReason
ERROR_REASON_NO_MATCHING_TRIGGER: ErrorReason
ERROR_REASON_SYSTEM_EXISTS: ErrorReason
ERROR_REASON_LEVEL_EXISTS: ErrorReason
ERROR_REASON_IDEMPOTENCY_KEY_REUSED: ErrorReason
ERROR_REASON_INSUFFICIENT_POINTS: ErrorReason
ERROR_REASON_ALREADY_REVERSED: ErrorReason
ERROR_REASON_NOT_REVERSIBLE: ErrorReason
ERROR_REASON_RATE_LIMITED: ErrorReason
ERROR_REASON_API_KEY_MISSING: ErrorReason
ERROR_REASON_API_KEY_INVALID: ErrorReason
ERROR_REASON_API_KEY_REVOKED: ErrorReason
ERROR_REASON_SCOPE_INSUFFICIENT: ErrorReason
ERROR_REASON_STORE_UNAVAILABLE: ErrorReason
ERROR_REASON_TOKEN_INVALID: ErrorReason
ERROR_REASON_TOKEN_EXPIRED: ErrorReason
ENTRY_TYPE_UNSPECIFIED: EntryType
ENTRY_TYPE_AWARD: EntryType
ENTRY_TYPE_DEDUCT: EntryType
ENTRY_TYPE_EXPIRE: EntryType
ENTRY_TYPE_REVERSAL: EntryType

class User(_message.Message):
    __slots__ = ("id", "display_name", "email", "attributes", "create_time")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    email: str
    attributes: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., email: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("id", "sequence", "system_key", "user_id", "type", "amount", "base_amount", "multiplier", "boost_ids", "capped", "balance_after", "reason", "metadata", "idempotency_key", "trigger_id", "event_type", "expire_time", "reverses_entry_id", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BASE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    BOOST_IDS_FIELD_NUMBER: _ClassVar[int]
    CAPPED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVERSES_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    sequence: int
    system_key: str
    user_id: str
    type: EntryType
    amount: int
    base_amount: int
    multiplier: float
    boost_ids: _containers.RepeatedScalarFieldContainer[str]
    capped: bool
    balance_after: int
    reason: str
    metadata: _struct_pb2.Struct
    idempotency_key: str
    trigger_id: str
    event_type: str
    expire_time: _timestamp_pb2.Timestamp
    reverses_entry_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., sequence: _Optional[int] = ..., system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., type: _Optional[_Union[EntryType, str]] = ..., amount: _Optional[int] = ..., base_amount: _Optional[int] = ..., multiplier: _Optional[float] = ..., boost_ids: _Optional[_Iterable[str]] = ..., capped: _Optional[bool] = ..., balance_after: _Optional[int] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., trigger_id: _Optional[str] = ..., event_type: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reverses_entry_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("id", "system_key", "key", "name", "description", "badge_url", "points")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BADGE_URL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    system_key: str
    key: str
    name: str
    description: str
    badge_url: str
    points: int
    def __init__(self, id: _Optional[str] = ..., system_key: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., badge_url: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class LevelChange(_message.Message):
    __slots__ = ("sequence", "system_key", "user_id", "previous_level", "new_level", "entry_id", "create_time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LEVEL_FIELD_NUMBER: _ClassVar[int]
    NEW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    system_key: str
    user_id: str
    previous_level: Level
    new_level: Level
    entry_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., previous_level: _Optional[_Union[Level, _Mapping]] = ..., new_level: _Optional[_Union[Level, _Mapping]] = ..., entry_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("system_key", "user_id", "balance", "total_earned", "total_spent", "total_expired", "level", "max_points", "last_earned_time")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EARNED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SPENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    LAST_EARNED_TIME_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    balance: int
    total_earned: int
    total_spent: int
    total_expired: int
    level: Level
    max_points: int
    last_earned_time: _timestamp_pb2.Timestamp
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., balance: _Optional[int] = ..., total_earned: _Optional[int] = ..., total_spent: _Optional[int] = ..., total_expired: _Optional[int] = ..., level: _Optional[_Union[Level, _Mapping]] = ..., max_points: _Optional[int] = ..., last_earned_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
