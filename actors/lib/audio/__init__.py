"""Audio building blocks shared by audio_source, vad, speech, audio_events and the batch commands."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""The shipped speech fixtures (made by ``python -m actors.lib.audio.make_fixtures``)."""
DEMO_RECORDING = FIXTURES / "demo.wav"
"""What ``audio_source`` plays when its ``path`` is ''."""
