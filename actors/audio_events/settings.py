"""Settings of the audio_events kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from config.paths import Locations
from config.schema import Strict


class AudioEventsSettings(Strict):
    """Sound events (TensorFlow): audio.chunk in, audio.event out."""

    model: Literal["head", "yamnet"] = "head"
    """head: the shipped classifier (alarm, clapping, laughter, speech, noise, silence); yamnet: YAMNet with
    the weights and class map below (521 AudioSet classes)."""
    head_path: str = "models/events/head-v1.sealed"
    """The head's sealed weights file (relative paths: from the repository root)."""
    yamnet_weights: str = ""
    """YAMNet's yamnet.h5 (Keras HDF5 weights), for model = "yamnet"; never downloaded."""
    yamnet_class_map: str = ""
    """YAMNet's yamnet_class_map.csv (index,mid,display_name), for model = "yamnet"."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Score a patch needs for its class to be on, 0..1, unless ``thresholds`` names the class."""
    thresholds: dict[str, float] = {}
    """Per-class thresholds, e.g. { laughter = 0.6, alarm = 0.4 } (labels of the classifier)."""
    report: list[str] = []
    """Classes to publish; empty: every class but those in ``ignore``."""
    ignore: list[str] = ["noise", "silence", "Silence"]
    """Classes never published when ``report`` is empty (backgrounds)."""
    min_patches: int = Field(1, ge=1)
    """Patches (0.48 s apart) a class must stay on to make an event."""
    topic: str = "audio.chunk"
    """Topic of the input audio."""
    intra_op_threads: int = Field(1, ge=0, le=64)
    """TensorFlow threads inside one op; 0 lets TensorFlow choose."""
    inter_op_threads: int = Field(1, ge=0, le=64)
    """TensorFlow ops run in parallel; 0 lets TensorFlow choose."""
    idle_flush_s: float = Field(5.0, gt=0)
    """A stream silent this long (its sender gone) is closed and its open events published, seconds."""
    max_streams: int = Field(16, ge=1)
    """Streams tracked at once; a new one beyond this closes the least recently heard."""

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for label, th in v.items():
            if not 0 < th <= 1:
                raise ValueError(f"threshold of {label!r} is {th}: expected 0 < threshold <= 1")
        return v

    @model_validator(mode="after")
    def _yamnet_files(self) -> "AudioEventsSettings":
        if self.model == "yamnet" and not (self.yamnet_weights and self.yamnet_class_map):
            raise ValueError('model = "yamnet" needs yamnet_weights (yamnet.h5) and yamnet_class_map '
                             "(yamnet_class_map.csv): nothing is downloaded")
        return self

    def default_paths(self, where: Locations) -> dict[str, Any]:
        return {key: str(where.resolve(value)) for key, value in
                (("head_path", self.head_path), ("yamnet_weights", self.yamnet_weights),
                 ("yamnet_class_map", self.yamnet_class_map)) if value}
