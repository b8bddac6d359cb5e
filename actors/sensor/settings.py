"""Settings of the sensor kind (IMU) and of its sources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bus.endpoints import is_loopback
from config.paths import Locations
from config.schema import BackoffSettings, Strict


class SyntheticSourceSettings(Strict):
    script: list[str] = ["wave", "circle", "punch", "lift", "shake", "twist", "swipe_left", "swipe_right"]
    """Gestures performed in turn (names of actors/lib/imu/synthetic.py GESTURES)."""
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
    body_timeout_s: float = Field(10.0, gt=0)
    """A body not received in full this long after its request head (a Content-Length larger than what is
    sent) gets HTTP 408 and the connection is closed, seconds."""
    idle_timeout_s: float = Field(15.0, gt=0)
    """A connection that has not sent a complete request head this long after connecting, or that sits idle
    this long between requests, is closed (slow clients are evicted), seconds."""
    max_header_bytes: int = Field(8190, ge=256)
    """Longest request line and header field; longer ones get HTTP 400, bytes."""
    max_headers: int = Field(64, ge=8)
    """Most header fields in a request; more get HTTP 400."""
    backlog: int = Field(512, ge=1)
    """Connections the kernel queues before they are accepted."""
    token_file: str = ""
    """A file (mode 0600) holding the token every push must carry, as ``?token=...`` in Sensor Logger's push
    URL or an ``Authorization: Bearer ...`` header (others get HTTP 401); required when ``host`` is not a
    loopback address, since anything that listens off loopback needs a token; '' : no token (loopback only)."""


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

    def default_paths(self, where: Locations) -> dict[str, Any]:
        return {"path": str(where.resolve(self.path))} if self.path else {}


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
        if self.source == "http" and not is_loopback(self.http.host) and not self.http.token_file:
            raise ValueError(f"http.host = {self.http.host!r} listens off loopback: set http.token_file (a 0600 file "
                             "holding the token each push carries as ?token=...), or keep host = '127.0.0.1'")
        return self
