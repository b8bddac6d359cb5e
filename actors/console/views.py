"""Bus messages as JSON for the browser: arrays summarised or listed, camera frames as JPEG."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from bus.envelope import Message

MAX_LISTED_ELEMENTS = 4096
"""Arrays up to this many elements go to clients as nested lists; larger ones as {dtype, shape}."""

try:  # cv2 encodes a frame in ~1 ms and releases the GIL; Pillow is the fallback
    import cv2
except ImportError:  # pragma: no cover - the vision extra is usually there
    cv2 = None


def jpeg(image: np.ndarray, quality: int) -> bytes | None:
    """A BGR uint8 HxWx3 image as JPEG bytes (None without cv2 and Pillow)."""
    if cv2 is not None:
        ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        return bytes(buf) if ok else None
    try:
        from io import BytesIO  # noqa: PLC0415

        from PIL import Image  # noqa: PLC0415
    except ImportError:
        return None
    out = BytesIO()
    Image.fromarray(np.ascontiguousarray(image[..., ::-1])).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def jsonable(value: Any) -> Any:
    """``value`` with arrays, bytes, numpy scalars and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.size <= MAX_LISTED_ELEMENTS and value.dtype.kind in "biuf":
            return jsonable(value.tolist())
        return {"dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(bytes(value))}
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def message_view(msg: Message, jpeg_quality: int = 70) -> dict[str, Any]:
    """The ``{"type": "message"}`` event of one bus message (camera frames carry ``image.jpeg``, base64)."""
    body = dict(msg.body)
    image = body.get("image") if msg.topic == "camera.frame" else None
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.dtype == np.uint8:
        data = jpeg(image, jpeg_quality)
        body["image"] = {"jpeg": base64.b64encode(data).decode() if data else None,
                         "width": int(image.shape[1]), "height": int(image.shape[0])}
    return {"type": "message", "topic": msg.topic, "src": msg.header.src, "seq": msg.header.seq,
            "ts": msg.header.ts, "body": jsonable(body)}
