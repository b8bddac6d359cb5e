"""Settings of the console kind (the web console and its WebSocket API)."""

from __future__ import annotations

from pydantic import Field

from actors.lib.gesture.store import GestureStoreSettings
from config.schema import Strict


class ConsoleSettings(Strict):
    """The web console: the page and the JSON-over-WebSocket API (docs/api.md)."""

    host: str = "127.0.0.1"
    """Address the web server listens on. Loopback by default; any other address needs ``tls_cert``,
    ``tls_key`` and a token on every connection."""
    port: int = Field(8080, ge=0, le=65535)
    """TCP port of the page and the API (0: any free port; the chosen one is logged)."""
    tls_cert: str = ""
    """PEM certificate (chain) for https/wss; required off loopback."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    token_path: str = ""
    """The console token file (made 0600 at first start, printed once); '' : DATA_DIR/console/token."""
    data_dir: str = ""
    """Where jobs and practice history persist; '' : $XDG_DATA_HOME/sensorium/console."""
    allowed_origins: list[str] = []
    """Extra page origins allowed to open the WebSocket (``https://host:port``); the console's own
    origin is always allowed, every other one refused."""
    publish_prefixes: list[str] = ["test.", "speech.transcript", "console."]
    """Topics (exact, or prefixes ending in '.') that API clients may publish on."""
    max_rate_hz: float = Field(20.0, gt=0, le=100)
    """Most messages per second a client receives per subscribed topic: a faster topic gets its latest
    value only (a slow client never slows the bus)."""
    max_request_bytes: int = Field(65_536, ge=1024, le=1 << 24)
    """Largest request a client may send; a larger one gets an error reply (a frame over 4x this closes
    the connection)."""
    requests_per_s: float = Field(50.0, gt=0)
    """Requests per second a connection may send (burst: twice this); beyond: ``rate_limited`` errors."""
    jpeg_quality: int = Field(70, ge=10, le=100)
    """JPEG quality of camera frames sent to clients."""
    models_dir: str = ""
    """The shipped model store (as the detector's ``models_dir``); '' : the repository's models/."""
    user_dir: str = ""
    """The user model store (as the detector's ``user_dir``); '' : $XDG_DATA_HOME/sensorium/models."""
    gestures: GestureStoreSettings = GestureStoreSettings()
    """The gesture store (as the gesture recognizer's ``store``)."""
    imu_topic: str = "sensor.imu"
    """The IMU stream recording sessions cut samples from."""
