import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import code_pb2 as _code_pb2
from tally.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LevelBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVEL_BASIS_UNSPECIFIED: _ClassVar[LevelBasis]
    LEVEL_BASIS_BALANCE: _ClassVar[LevelBasis]
    LEVEL_BASIS_LIFETIME_EARNED: _ClassVar[LevelBasis]

class TriggerType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_TYPE_UNSPECIFIED: _ClassVar[TriggerType]
    TRIGGER_TYPE_EVENT: _ClassVar[TriggerType]
    TRIGGER_TYPE_METRIC: _ClassVar[TriggerType]
    TRIGGER_TYPE_USER_IDENTIFIED: _ClassVar[TriggerType]
    TRIGGER_TYPE_TIME_INTERVAL: _ClassVar[TriggerType]

class TriggerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_STATUS_UNSPECIFIED: _ClassVar[TriggerStatus]
    TRIGGER_STATUS_INACTIVE: _ClassVar[TriggerStatus]
    TRIGGER_STATUS_ACTIVE: _ClassVar[TriggerStatus]
    TRIGGER_STATUS_ARCHIVED: _ClassVar[TriggerStatus]

class IntervalUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERVAL_UNIT_UNSPECIFIED: _ClassVar[IntervalUnit]
    INTERVAL_UNIT_MINUTES: _ClassVar[IntervalUnit]
    INTERVAL_UNIT_HOURS: _ClassVar[IntervalUnit]
    INTERVAL_UNIT_DAYS: _ClassVar[IntervalUnit]

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    AGGREGATION_DAILY: _ClassVar[Aggregation]
    AGGREGATION_WEEKLY: _ClassVar[Aggregation]
    AGGREGATION_MONTHLY: _ClassVar[Aggregation]
LEVEL_BASIS_UNSPECIFIED: LevelBasis
LEVEL_BASIS_BALANCE: LevelBasis
LEVEL_BASIS_LIFETIME_EARNED: LevelBasis
TRIGGER_TYPE_UNSPECIFIED: TriggerType
TRIGGER_TYPE_EVENT: TriggerType
TRIGGER_TYPE_METRIC: TriggerType
TRIGGER_TYPE_USER_IDENTIFIED: TriggerType
TRIGGER_TYPE_TIME_INTERVAL: TriggerType
TRIGGER_STATUS_UNSPECIFIED: TriggerStatus
TRIGGER_STATUS_INACTIVE: TriggerStatus
TRIGGER_STATUS_ACTIVE: TriggerStatus
TRIGGER_STATUS_ARCHIVED: TriggerStatus
INTERVAL_UNIT_UNSPECIFIED: IntervalUnit
INTERVAL_UNIT_MINUTES: IntervalUnit
INTERVAL_UNIT_HOURS: IntervalUnit
INTERVAL_UNIT_DAYS: IntervalUnit
AGGREGATION_UNSPECIFIED: Aggregation
AGGREGATION_DAILY: Aggregation
AGGREGATION_WEEKLY: Aggregation
AGGREGATION_MONTHLY: Aggregation

class PointsSystem(_message.Message):
    __slots__ = ("key", "name", "description", "badge_url", "max_points", "level_basis", "create_time", "update_time", "triggers")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BADGE_URL_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    description: str
    badge_url: str
    max_points: int
    level_basis: LevelBasis
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., badge_url: _Optional[str] = ..., max_points: _Optional[int] = ..., level_basis: _Optional[_Union[LevelBasis, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("id", "system_key", "type", "points", "status", "event_type", "metric_threshold", "interval_unit", "interval_count", "event_attributes", "user_attributes", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_UNIT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    system_key: str
    type: TriggerType
    points: int
    status: TriggerStatus
    event_type: str
    metric_threshold: float
    interval_unit: IntervalUnit
    interval_count: int
    event_attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    user_attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., system_key: _Optional[str] = ..., type: _Optional[_Union[TriggerType, str]] = ..., points: _Optional[int] = ..., status: _Optional[_Union[TriggerStatus, str]] = ..., event_type: _Optional[str] = ..., metric_threshold: _Optional[float] = ..., interval_unit: _Optional[_Union[IntervalUnit, str]] = ..., interval_count: _Optional[int] = ..., event_attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., user_attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSystemRequest(_message.Message):
    __slots__ = ("system",)
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    system: PointsSystem
    def __init__(self, system: _Optional[_Union[PointsSystem, _Mapping]] = ...) -> None: ...

class CreateSystemResponse(_message.Message):
    __slots__ = ("system",)
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    system: PointsSystem
    def __init__(self, system: _Optional[_Union[PointsSystem, _Mapping]] = ...) -> None: ...

class GetSystemRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetSystemResponse(_message.Message):
    __slots__ = ("system",)
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    system: PointsSystem
    def __init__(self, system: _Optional[_Union[PointsSystem, _Mapping]] = ...) -> None: ...

class ListSystemsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSystemsResponse(_message.Message):
    __slots__ = ("systems", "next_page_token")
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    systems: _containers.RepeatedCompositeFieldContainer[PointsSystem]
    next_page_token: str
    def __init__(self, systems: _Optional[_Iterable[_Union[PointsSystem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSystemRequest(_message.Message):
    __slots__ = ("system", "update_mask")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    system: PointsSystem
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, system: _Optional[_Union[PointsSystem, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSystemResponse(_message.Message):
    __slots__ = ("system",)
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    system: PointsSystem
    def __init__(self, system: _Optional[_Union[PointsSystem, _Mapping]] = ...) -> None: ...

class CreateTriggerRequest(_message.Message):
    __slots__ = ("system_key", "trigger")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    trigger: Trigger
    def __init__(self, system_key: _Optional[str] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class CreateTriggerResponse(_message.Message):
    __slots__ = ("trigger",)
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class UpdateTriggerRequest(_message.Message):
    __slots__ = ("trigger", "update_mask")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateTriggerResponse(_message.Message):
    __slots__ = ("trigger",)
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class ListTriggersRequest(_message.Message):
    __slots__ = ("system_key", "page_size", "page_token")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    page_size: int
    page_token: str
    def __init__(self, system_key: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTriggersResponse(_message.Message):
    __slots__ = ("triggers", "next_page_token")
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    next_page_token: str
    def __init__(self, triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PreviewTriggersRequest(_message.Message):
    __slots__ = ("system_key", "triggers", "trigger_ids", "start_time", "end_time", "bucket_count")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNT_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    trigger_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    bucket_count: int
    def __init__(self, system_key: _Optional[str] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ..., trigger_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket_count: _Optional[int] = ...) -> None: ...

class PreviewTriggersResponse(_message.Message):
    __slots__ = ("users", "awards", "points", "per_trigger", "distribution", "events")
    USERS_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PER_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    users: int
    awards: int
    points: int
    per_trigger: _containers.RepeatedCompositeFieldContainer[TriggerPreview]
    distribution: _containers.RepeatedCompositeFieldContainer[PointsBucket]
    events: int
    def __init__(self, users: _Optional[int] = ..., awards: _Optional[int] = ..., points: _Optional[int] = ..., per_trigger: _Optional[_Iterable[_Union[TriggerPreview, _Mapping]]] = ..., distribution: _Optional[_Iterable[_Union[PointsBucket, _Mapping]]] = ..., events: _Optional[int] = ...) -> None: ...

class TriggerPreview(_message.Message):
    __slots__ = ("index_or_id", "awards", "points")
    INDEX_OR_ID_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    index_or_id: str
    awards: int
    points: int
    def __init__(self, index_or_id: _Optional[str] = ..., awards: _Optional[int] = ..., points: _Optional[int] = ...) -> None: ...

class AwardRequest(_message.Message):
    __slots__ = ("system_key", "user", "amount", "reason", "metadata", "idempotency_key", "expire_time", "skip_boosts", "validate_only")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SKIP_BOOSTS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user: _common_pb2.User
    amount: int
    reason: str
    metadata: _struct_pb2.Struct
    idempotency_key: str
    expire_time: _timestamp_pb2.Timestamp
    skip_boosts: bool
    validate_only: bool
    def __init__(self, system_key: _Optional[str] = ..., user: _Optional[_Union[_common_pb2.User, _Mapping]] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., skip_boosts: _Optional[bool] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class AwardResponse(_message.Message):
    __slots__ = ("entry", "balance", "level_change", "replayed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.LedgerEntry
    balance: _common_pb2.Balance
    level_change: _common_pb2.LevelChange
    replayed: bool
    def __init__(self, entry: _Optional[_Union[_common_pb2.LedgerEntry, _Mapping]] = ..., balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., level_change: _Optional[_Union[_common_pb2.LevelChange, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class DeductRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "amount", "reason", "metadata", "idempotency_key", "validate_only")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    amount: int
    reason: str
    metadata: _struct_pb2.Struct
    idempotency_key: str
    validate_only: bool
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class DeductResponse(_message.Message):
    __slots__ = ("entry", "balance", "level_change", "replayed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.LedgerEntry
    balance: _common_pb2.Balance
    level_change: _common_pb2.LevelChange
    replayed: bool
    def __init__(self, entry: _Optional[_Union[_common_pb2.LedgerEntry, _Mapping]] = ..., balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., level_change: _Optional[_Union[_common_pb2.LevelChange, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class AwardBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AwardBatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[AwardBatchItem, _Mapping]]] = ...) -> None: ...

class AwardBatchItem(_message.Message):
    __slots__ = ("system_key", "user", "amount", "reason", "metadata", "idempotency_key", "skip_boosts")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SKIP_BOOSTS_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user: _common_pb2.User
    amount: int
    reason: str
    metadata: _struct_pb2.Struct
    idempotency_key: str
    skip_boosts: bool
    def __init__(self, system_key: _Optional[str] = ..., user: _Optional[_Union[_common_pb2.User, _Mapping]] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., skip_boosts: _Optional[bool] = ...) -> None: ...

class AwardBatchResponse(_message.Message):
    __slots__ = ("processed", "failed", "results")
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    processed: int
    failed: int
    results: _containers.RepeatedCompositeFieldContainer[AwardBatchResult]
    def __init__(self, processed: _Optional[int] = ..., failed: _Optional[int] = ..., results: _Optional[_Iterable[_Union[AwardBatchResult, _Mapping]]] = ...) -> None: ...

class AwardBatchResult(_message.Message):
    __slots__ = ("user_id", "entry", "balance", "error", "replayed")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    entry: _common_pb2.LedgerEntry
    balance: _common_pb2.Balance
    error: BatchItemError
    replayed: bool
    def __init__(self, user_id: _Optional[str] = ..., entry: _Optional[_Union[_common_pb2.LedgerEntry, _Mapping]] = ..., balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., error: _Optional[_Union[BatchItemError, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class BatchItemError(_message.Message):
    __slots__ = ("code", "reason", "message", "metadata", "status")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    metadata: _containers.ScalarMap[str, str]
    status: _code_pb2.Code
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[_code_pb2.Code, str]] = ...) -> None: ...

class RecordEventRequest(_message.Message):
    __slots__ = ("user", "event_type", "value", "attributes", "metadata", "idempotency_key", "validate_only")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    user: _common_pb2.User
    event_type: str
    value: float
    attributes: _containers.ScalarMap[str, str]
    metadata: _struct_pb2.Struct
    idempotency_key: str
    validate_only: bool
    def __init__(self, user: _Optional[_Union[_common_pb2.User, _Mapping]] = ..., event_type: _Optional[str] = ..., value: _Optional[float] = ..., attributes: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class RecordEventResponse(_message.Message):
    __slots__ = ("event_id", "metric_total", "results", "replayed")
    class ResultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SystemEventResult
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SystemEventResult, _Mapping]] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    metric_total: float
    results: _containers.MessageMap[str, SystemEventResult]
    replayed: bool
    def __init__(self, event_id: _Optional[str] = ..., metric_total: _Optional[float] = ..., results: _Optional[_Mapping[str, SystemEventResult]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SystemEventResult(_message.Message):
    __slots__ = ("added", "balance", "awards", "level_change")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    added: int
    balance: _common_pb2.Balance
    awards: _containers.RepeatedCompositeFieldContainer[TriggerAward]
    level_change: _common_pb2.LevelChange
    def __init__(self, added: _Optional[int] = ..., balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., awards: _Optional[_Iterable[_Union[TriggerAward, _Mapping]]] = ..., level_change: _Optional[_Union[_common_pb2.LevelChange, _Mapping]] = ...) -> None: ...

class TriggerAward(_message.Message):
    __slots__ = ("entry", "trigger")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.LedgerEntry
    trigger: Trigger
    def __init__(self, entry: _Optional[_Union[_common_pb2.LedgerEntry, _Mapping]] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class ReverseRequest(_message.Message):
    __slots__ = ("entry_id", "reason", "idempotency_key", "user_id")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    reason: str
    idempotency_key: str
    user_id: str
    def __init__(self, entry_id: _Optional[str] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ReverseResponse(_message.Message):
    __slots__ = ("entry", "balance", "level_change", "replayed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.LedgerEntry
    balance: _common_pb2.Balance
    level_change: _common_pb2.LevelChange
    replayed: bool
    def __init__(self, entry: _Optional[_Union[_common_pb2.LedgerEntry, _Mapping]] = ..., balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., level_change: _Optional[_Union[_common_pb2.LevelChange, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "recent_entries")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    recent_entries: int
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., recent_entries: _Optional[int] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance", "next_level", "recent", "triggers")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    balance: _common_pb2.Balance
    next_level: _common_pb2.Level
    recent: _containers.RepeatedCompositeFieldContainer[_common_pb2.LedgerEntry]
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, balance: _Optional[_Union[_common_pb2.Balance, _Mapping]] = ..., next_level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ..., recent: _Optional[_Iterable[_Union[_common_pb2.LedgerEntry, _Mapping]]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "page_size", "page_token", "types")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    page_size: int
    page_token: str
    types: _containers.RepeatedScalarFieldContainer[_common_pb2.EntryType]
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., types: _Optional[_Iterable[_Union[_common_pb2.EntryType, str]]] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "total_size")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LedgerEntry]
    next_page_token: str
    total_size: int
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class StreamHistoryRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "start_time", "end_time")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamHistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.LedgerEntry, _Mapping]]] = ...) -> None: ...

class WatchLedgerRequest(_message.Message):
    __slots__ = ("system_key", "after_sequence", "follow")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    after_sequence: int
    follow: bool
    def __init__(self, system_key: _Optional[str] = ..., after_sequence: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class WatchLedgerResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.LedgerEntry, _Mapping]]] = ...) -> None: ...

class GetPointsSummaryRequest(_message.Message):
    __slots__ = ("system_key", "bucket_count", "user_attributes")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    bucket_count: int
    user_attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    def __init__(self, system_key: _Optional[str] = ..., bucket_count: _Optional[int] = ..., user_attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ...) -> None: ...

class GetPointsSummaryResponse(_message.Message):
    __slots__ = ("buckets", "total_users")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USERS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[PointsBucket]
    total_users: int
    def __init__(self, buckets: _Optional[_Iterable[_Union[PointsBucket, _Mapping]]] = ..., total_users: _Optional[int] = ...) -> None: ...

class PointsBucket(_message.Message):
    __slots__ = ("to", "users")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    to: int
    users: int
    def __init__(self, to: _Optional[int] = ..., users: _Optional[int] = ..., **kwargs) -> None: ...

class GetUserPointsSummaryRequest(_message.Message):
    __slots__ = ("system_key", "user_id", "aggregation", "start_date", "end_date", "time_zone")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    aggregation: Aggregation
    start_date: str
    end_date: str
    time_zone: str
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class GetUserPointsSummaryResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[PointsPeriod]
    def __init__(self, points: _Optional[_Iterable[_Union[PointsPeriod, _Mapping]]] = ...) -> None: ...

class PointsPeriod(_message.Message):
    __slots__ = ("date", "total", "change")
    DATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    date: str
    total: int
    change: int
    def __init__(self, date: _Optional[str] = ..., total: _Optional[int] = ..., change: _Optional[int] = ...) -> None: ...

class GetPointsAnalyticsRequest(_message.Message):
    __slots__ = ("system_key", "start_date", "end_date", "aggregation", "time_zone", "top")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    start_date: str
    end_date: str
    aggregation: Aggregation
    time_zone: str
    top: int
    def __init__(self, system_key: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., time_zone: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class GetPointsAnalyticsResponse(_message.Message):
    __slots__ = ("earned", "top_earners", "new_users", "average_first_14_days", "triggers")
    EARNED_FIELD_NUMBER: _ClassVar[int]
    TOP_EARNERS_FIELD_NUMBER: _ClassVar[int]
    NEW_USERS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_FIRST_14_DAYS_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    earned: _containers.RepeatedCompositeFieldContainer[EarnedPeriod]
    top_earners: _containers.RepeatedCompositeFieldContainer[TopEarner]
    new_users: int
    average_first_14_days: float
    triggers: _containers.RepeatedCompositeFieldContainer[TriggerEarnings]
    def __init__(self, earned: _Optional[_Iterable[_Union[EarnedPeriod, _Mapping]]] = ..., top_earners: _Optional[_Iterable[_Union[TopEarner, _Mapping]]] = ..., new_users: _Optional[int] = ..., average_first_14_days: _Optional[float] = ..., triggers: _Optional[_Iterable[_Union[TriggerEarnings, _Mapping]]] = ...) -> None: ...

class EarnedPeriod(_message.Message):
    __slots__ = ("date", "points", "users")
    DATE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    date: str
    points: int
    users: int
    def __init__(self, date: _Optional[str] = ..., points: _Optional[int] = ..., users: _Optional[int] = ...) -> None: ...

class TopEarner(_message.Message):
    __slots__ = ("user_id", "points")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    points: int
    def __init__(self, user_id: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class TriggerEarnings(_message.Message):
    __slots__ = ("trigger", "awards", "points", "trigger_id")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    awards: int
    points: int
    trigger_id: str
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ..., awards: _Optional[int] = ..., points: _Optional[int] = ..., trigger_id: _Optional[str] = ...) -> None: ...
