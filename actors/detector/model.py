"""The Hydra model: one small conv backbone, one CenterNet-style head per signal.

The backbone turns a 120x160 BGR frame into a 30x40 feature map (stride 4).
Each head reads those shared features and predicts, per cell, a centre
heatmap logit, the box size (log of width/height in cells) and the centre's
sub-cell offset. Decoding keeps local maxima of the heatmap above a score
threshold. Most of the compute is in the backbone, so N heads cost about one
backbone plus N small heads instead of N full models (see bench/hydra.py).

Weight files are ``torch.save`` of ``{"format", "arch", "state_dict"}``
(loaded with ``weights_only=True``: no pickled code runs). A *legacy*
checkpoint is the state dict of a single-signal ``MonolithicDetector``
(``backbone.*`` and ``head.*`` keys in one dict); ``split_legacy`` turns it
into a backbone and a head.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
INPUT_HW = (120, 160)
"""Model input height, width (pixels); frames of another size are resized."""
BACKBONE_CHANNELS = (16, 32, 48, 48, 48)
DILATIONS = (1, 1, 1, 2, 4)
STRIDES = (2, 2, 1, 1, 1)
HEAD_HIDDEN = 24
HEAD_OUTPUTS = 5
"""Heatmap logit, log width, log height (cells), offset x, offset y (cells)."""
BACKBONE_FORMAT = "sensorium.hydra.backbone/1"
HEAD_FORMAT = "sensorium.hydra.head/1"


class UnsupportedCheckpoint(ValueError):
    """A checkpoint whose layout is not one Sensorium can read; says what was expected."""


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    def __init__(self, channels: tuple[int, ...] = BACKBONE_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        cin = 3
        layers = []
        for cout, s, d in zip(self.channels, STRIDES, DILATIONS):
            layers.append(ConvBN(cin, cout, s, d))
            cin = cout
        self.layers = nn.Sequential(*layers)

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def arch(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "stride": STRIDE, "input_hw": list(INPUT_HW)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Head(nn.Module):
    def __init__(self, in_channels: int = BACKBONE_CHANNELS[-1], hidden: int = HEAD_HIDDEN) -> None:
        super().__init__()
        self.in_channels, self.hidden = int(in_channels), int(hidden)
        self.conv = nn.Conv2d(self.in_channels, self.hidden, 3, padding=1)
        self.out = nn.Conv2d(self.hidden, HEAD_OUTPUTS, 1)
        nn.init.constant_(self.out.bias, 0.0)
        with torch.no_grad():
            self.out.bias[0] = -2.2  # start with a low heatmap (prior ~0.1), as CenterNet does

    def arch(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "hidden": self.hidden}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.conv(features)))


class MonolithicDetector(nn.Module):
    """One full single-signal model (backbone + head): the legacy layout, and
    the baseline bench/hydra.py compares shared heads against."""

    def __init__(self, backbone: Backbone | None = None, head: Head | None = None) -> None:
        super().__init__()
        self.backbone = backbone or Backbone()
        self.head = head or Head(self.backbone.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Hydra(nn.Module):
    """The backbone once, then every head on the shared features."""

    def __init__(self, backbone: Backbone, heads: Mapping[str, Head] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads or {}))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        return {name: head(features) for name, head in self.heads.items()}


# -- frames in, boxes out ----------------------------------------------------

def preprocess(images: np.ndarray | list[np.ndarray], input_hw: tuple[int, int] = INPUT_HW) -> torch.Tensor:
    """uint8 BGR HxWx3 frame(s) -> float32 N x 3 x H x W in -0.5..0.5, resized to ``input_hw``."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    h, w = input_hw
    batch = np.stack([img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                      for img in images])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


@dataclass
class Decoded:
    boxes: np.ndarray
    """float32 K x 4, x1 y1 x2 y2 in pixels of the original frame."""
    scores: np.ndarray
    """float32 K."""


def decode(out: torch.Tensor, *, frame_hw: tuple[int, int], input_hw: tuple[int, int] = INPUT_HW,
           score_threshold: float = 0.3, max_detections: int = 32) -> list[Decoded]:
    """Head output N x 5 x h x w -> boxes per image: local maxima of the heatmap (3x3) above the threshold."""
    out = out.float()
    heat = torch.sigmoid(out[:, 0])
    peaks = heat == F.max_pool2d(heat[:, None], 3, 1, 1)[:, 0]
    scale_x = frame_hw[1] / input_hw[1] * STRIDE
    scale_y = frame_hw[0] / input_hw[0] * STRIDE
    results = []
    for i in range(out.shape[0]):
        scores = heat[i] * peaks[i]
        flat = scores.flatten()
        k = min(max_detections, flat.numel())
        top, idx = flat.topk(k)
        keep = top >= score_threshold
        top, idx = top[keep], idx[keep]
        w_cells = out.shape[-1]
        ys, xs = (idx // w_cells).float(), (idx % w_cells).float()
        reg = out[i, 1:].flatten(1)[:, idx]
        bw, bh = reg[0].clamp(-4, 4).exp(), reg[1].clamp(-4, 4).exp()
        cx, cy = xs + reg[2], ys + reg[3]
        boxes = torch.stack([(cx - bw / 2) * scale_x, (cy - bh / 2) * scale_y,
                             (cx + bw / 2) * scale_x, (cy + bh / 2) * scale_y], dim=1)
        results.append(Decoded(boxes.cpu().numpy().astype(np.float32).reshape(-1, 4),
                               top.cpu().numpy().astype(np.float32)))
    return results


# -- weight files --------------------------------------------------------------

def to_bytes(module: Backbone | Head) -> bytes:
    fmt = BACKBONE_FORMAT if isinstance(module, Backbone) else HEAD_FORMAT
    buf = io.BytesIO()
    torch.save({"format": fmt, "arch": module.arch(),
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}}, buf)
    return buf.getvalue()


def _load_payload(data: bytes, what: str) -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; all mean "unreadable"
        raise UnsupportedCheckpoint(f"{what}: not a readable torch file ({type(exc).__name__}: {exc})") from exc
    return payload


def backbone_from_bytes(data: bytes, what: str = "backbone") -> Backbone:
    payload = _load_payload(data, what)
    if not isinstance(payload, dict) or payload.get("format") != BACKBONE_FORMAT:
        raise UnsupportedCheckpoint(f"{what}: expected a dict with format {BACKBONE_FORMAT!r}")
    backbone = Backbone(tuple(payload["arch"]["channels"]))
    backbone.load_state_dict(payload["state_dict"])
    return backbone.eval()


def head_from_bytes(data: bytes, what: str = "head") -> Head:
    payload = _load_payload(data, what)
    if not isinstance(payload, dict) or payload.get("format") != HEAD_FORMAT:
        raise UnsupportedCheckpoint(f"{what}: expected a dict with format {HEAD_FORMAT!r}")
    head = Head(payload["arch"]["in_channels"], payload["arch"]["hidden"])
    head.load_state_dict(payload["state_dict"])
    return head.eval()


LEGACY_EXPECTED = ("a single-signal state dict with 'backbone.layers.<i>.0.weight' (conv), "
                   "'backbone.layers.<i>.1.*' (batch norm) and 'head.conv.*', 'head.out.*' keys, "
                   "optionally wrapped as {'state_dict': ...} or {'model': ...}")


def split_legacy(checkpoint: Any, what: str = "checkpoint") -> tuple[MonolithicDetector, Backbone, Head]:
    """The monolithic model of a legacy checkpoint, and its backbone and head as separate modules."""
    sd = checkpoint
    if isinstance(sd, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(sd.get(wrapper), dict):
                sd = sd[wrapper]
                break
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise UnsupportedCheckpoint(f"{what}: not a state dict of tensors; expected {LEGACY_EXPECTED}")
    prefixes = {k.split(".", 1)[0] for k in sd}
    if prefixes != {"backbone", "head"}:
        raise UnsupportedCheckpoint(f"{what}: top-level key prefixes are {sorted(prefixes)}; expected {LEGACY_EXPECTED}")
    try:
        channels = []
        i = 0
        while f"backbone.layers.{i}.0.weight" in sd:
            channels.append(int(sd[f"backbone.layers.{i}.0.weight"].shape[0]))
            i += 1
        if len(channels) != len(STRIDES):
            raise UnsupportedCheckpoint(f"{what}: {len(channels)} backbone conv layers, expected {len(STRIDES)}; "
                                        f"expected {LEGACY_EXPECTED}")
        hidden, in_ch = sd["head.conv.weight"].shape[:2]
        model = MonolithicDetector(Backbone(tuple(channels)), Head(int(in_ch), int(hidden)))
        model.load_state_dict(sd, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise UnsupportedCheckpoint(f"{what}: {type(exc).__name__}: {str(exc)[:300]}; expected {LEGACY_EXPECTED}") from exc
    model.eval()
    backbone = Backbone(model.backbone.channels)
    backbone.load_state_dict(model.backbone.state_dict())
    head = Head(model.head.in_channels, model.head.hidden)
    head.load_state_dict(model.head.state_dict())
    return model, backbone.eval(), head.eval()


def split_max_abs_diff(model: MonolithicDetector, backbone: Backbone, head: Head, n: int = 4, seed: int = 0) -> float:
    """Largest absolute difference between the monolithic and the split outputs on random frames."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, *INPUT_HW), generator=g) - 0.5
    with torch.no_grad():
        return float((model(x) - head(backbone(x))).abs().max())
