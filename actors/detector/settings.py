"""Settings of the detector kind (the Hydra detector)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from config.paths import Locations
from config.schema import Strict


class DetectorSettings(Strict):
    """The Hydra detector: shared backbone, one head per signal, publishing detect.<signal>."""

    models_dir: str = ""
    """The shipped, read-only model store (registry.json, backbone/, heads/); '' means the repository's models/."""
    user_dir: str = ""
    """The user model store layered over it, where `sensorium models train/promote/rollback` write (the
    same setting is what the CLI reads); '' means $XDG_DATA_HOME/sensorium/models (~/.local/share/...)."""
    reload_check_s: float = Field(0.5, gt=0, le=60)
    """How often the registries are checked for a promote/rollback from elsewhere, seconds."""
    heads: list[str] = []
    """Signals to load at start; empty: every signal with an active version."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA (float16) when torch sees a GPU, else CPU (float32)."""
    threads: int = Field(1, ge=1, le=64)
    """torch CPU threads."""
    frame_topic: str = "camera.frame"
    """Topic of the frames to work on."""
    score_threshold: float = Field(0.3, gt=0, lt=1)
    """Heatmap peak score a detection needs, 0..1."""
    max_detections: int = Field(32, ge=1, le=1000)
    """Most boxes per signal and frame."""
    max_side_px: int = Field(4096, ge=16)
    """Frames with a side longer than this are dropped, pixels."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        from actors.lib.modelstore import DEFAULT_STORE, user_models_dir  # noqa: PLC0415 - only `config show` needs it

        return {"models_dir": str(where.resolve(self.models_dir) if self.models_dir else DEFAULT_STORE),
                "user_dir": str(user_models_dir(self.user_dir))}
