from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("request_id", "client_send_ns", "work_iterations", "payload")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_NS_FIELD_NUMBER: _ClassVar[int]
    WORK_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    client_send_ns: int
    work_iterations: int
    payload: bytes
    def __init__(self, request_id: _Optional[int] = ..., client_send_ns: _Optional[int] = ..., work_iterations: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class EchoReply(_message.Message):
    __slots__ = ("request_id", "client_send_ns", "work_result", "hops", "payload")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_NS_FIELD_NUMBER: _ClassVar[int]
    WORK_RESULT_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    client_send_ns: int
    work_result: int
    hops: int
    payload: bytes
    def __init__(self, request_id: _Optional[int] = ..., client_send_ns: _Optional[int] = ..., work_result: _Optional[int] = ..., hops: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...
