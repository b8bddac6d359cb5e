"""Topic rules (DESIGN.md, "The envelope" and "Topics").

A topic is UTF-8, lowercase, dot-separated segments: ``camera.frame``,
``detect.wifi_24``, ``ctl.detector@vision``. ZeroMQ matches subscriptions by
byte prefix, so ``sys.heartbeat`` would also match ``sys.heartbeats``; the
``Subscriber`` checks exact topics again after receipt.
"""

from __future__ import annotations

import re

MAX_TOPIC_BYTES = 200

# First segment names the area (sys, camera, detect...); later segments may
# carry an actor instance name such as ``detector@vision``.
_TOPIC_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_][a-z0-9_@\-]*)*")


class TopicError(ValueError):
    """A topic or subscription prefix that breaks the topic rules."""


def validate_topic(topic: str) -> str:
    """Return ``topic`` unchanged if it is a valid topic, else raise TopicError."""
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a str, got {type(topic).__name__}")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise TopicError(f"topic {topic[:40]!r}... is longer than {MAX_TOPIC_BYTES} bytes")
    if not _TOPIC_RE.fullmatch(topic):
        raise TopicError(
            f"invalid topic {topic!r}: expected lowercase dot-separated segments "
            "of [a-z0-9_] (later segments may contain '@' and '-'), e.g. 'camera.frame'"
        )
    return topic


def validate_prefix(prefix: str) -> str:
    """A subscription prefix: '' (everything), a topic, or a topic followed by '.'."""
    if prefix == "":
        return prefix
    validate_topic(prefix[:-1] if prefix.endswith(".") else prefix)
    return prefix


def ctl_topic(actor: str) -> str:
    """The command topic of one actor instance."""
    return validate_topic(f"ctl.{actor}")
