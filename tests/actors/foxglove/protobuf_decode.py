"""Decode a protobuf message from its schema alone (a FileDescriptorSet), as Foxglove does."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def message_class(schema_name: str, file_descriptor_set: bytes) -> Any:
    fds = descriptor_pb2.FileDescriptorSet.FromString(file_descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


def decode(schema_name: str, file_descriptor_set: bytes, data: bytes) -> Any:
    return message_class(schema_name, file_descriptor_set).FromString(data)
