from google.protobuf import field_mask_pb2 as _field_mask_pb2
from tally.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateLevelRequest(_message.Message):
    __slots__ = ("system_key", "level")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    level: _common_pb2.Level
    def __init__(self, system_key: _Optional[str] = ..., level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ...) -> None: ...

class CreateLevelResponse(_message.Message):
    __slots__ = ("level",)
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.Level
    def __init__(self, level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ...) -> None: ...

class UpdateLevelRequest(_message.Message):
    __slots__ = ("level", "update_mask")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.Level
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateLevelResponse(_message.Message):
    __slots__ = ("level",)
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.Level
    def __init__(self, level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ...) -> None: ...

class DeleteLevelRequest(_message.Message):
    __slots__ = ("system_key", "key")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    key: str
    def __init__(self, system_key: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class DeleteLevelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLevelsRequest(_message.Message):
    __slots__ = ("system_key", "page_size", "page_token")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    page_size: int
    page_token: str
    def __init__(self, system_key: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLevelsResponse(_message.Message):
    __slots__ = ("levels", "next_page_token")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Level]
    next_page_token: str
    def __init__(self, levels: _Optional[_Iterable[_Union[_common_pb2.Level, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUserLevelRequest(_message.Message):
    __slots__ = ("system_key", "user_id")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    user_id: str
    def __init__(self, system_key: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetUserLevelResponse(_message.Message):
    __slots__ = ("level", "next_level", "points", "points_to_next", "progress")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    NEXT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_NEXT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.Level
    next_level: _common_pb2.Level
    points: int
    points_to_next: int
    progress: float
    def __init__(self, level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ..., next_level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ..., points: _Optional[int] = ..., points_to_next: _Optional[int] = ..., progress: _Optional[float] = ...) -> None: ...

class GetLevelSummaryRequest(_message.Message):
    __slots__ = ("system_key",)
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    def __init__(self, system_key: _Optional[str] = ...) -> None: ...

class GetLevelSummaryResponse(_message.Message):
    __slots__ = ("levels", "users_without_level")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    USERS_WITHOUT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[LevelUserCount]
    users_without_level: int
    def __init__(self, levels: _Optional[_Iterable[_Union[LevelUserCount, _Mapping]]] = ..., users_without_level: _Optional[int] = ...) -> None: ...

class LevelUserCount(_message.Message):
    __slots__ = ("level", "users")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.Level
    users: int
    def __init__(self, level: _Optional[_Union[_common_pb2.Level, _Mapping]] = ..., users: _Optional[int] = ...) -> None: ...

class WatchLevelChangesRequest(_message.Message):
    __slots__ = ("system_key", "after_sequence", "follow")
    SYSTEM_KEY_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    system_key: str
    after_sequence: int
    follow: bool
    def __init__(self, system_key: _Optional[str] = ..., after_sequence: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class WatchLevelChangesResponse(_message.Message):
    __slots__ = ("level_change",)
    LEVEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    level_change: _common_pb2.LevelChange
    def __init__(self, level_change: _Optional[_Union[_common_pb2.LevelChange, _Mapping]] = ...) -> None: ...
