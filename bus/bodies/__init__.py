"""Typed bodies of the perception topics, one module per area.

Each topic has one dataclass built on ``bus.messages.Body``: its ``TOPIC``,
``to_body()``/``from_body()``, and a docstring per field giving its unit.
They live in ``bus`` (not next to the actor that publishes them) because the
actors that consume a topic need its schema too, and actors never import
each other. Arrays are numpy arrays in the body; the envelope codec sends
them as their own frames.
"""
