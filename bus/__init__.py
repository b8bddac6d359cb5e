"""The Sensorium bus: envelope codec, topics, broker, publisher/subscriber, CLI tools.

Imports nothing of the project above it (DESIGN.md, "Layout").
"""

from bus.endpoints import EndpointError, Endpoints, check_endpoint, ensure_private_dir
from bus.envelope import DEFAULT_LIMITS, EnvelopeError, Header, Limits, Message, decode, encode
from bus.pubsub import DEFAULT_HWM, Publisher, Subscriber
from bus.topics import TopicError, ctl_topic, validate_prefix, validate_topic
from config.paths import default_runtime_dir

__all__ = [
    "DEFAULT_HWM", "DEFAULT_LIMITS", "EndpointError", "Endpoints", "EnvelopeError", "Header", "Limits",
    "Message", "Publisher", "Subscriber", "TopicError", "check_endpoint", "ctl_topic", "decode",
    "default_runtime_dir", "encode", "ensure_private_dir", "validate_prefix", "validate_topic",
]
