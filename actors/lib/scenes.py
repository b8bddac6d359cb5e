"""Synthetic scenes: coloured shapes on a textured background, with their boxes.

One generator serves three users, so what the camera shows is what the heads
were trained on:

* the ``camera`` actor's synthetic source (``MovingScene``: objects drift and
  bounce, a few frames per second);
* training data for the shipped backbone and heads (``random_scene``: one
  independent scene per seed);
* ``sensorium models train --data DIR`` folders (``write_dataset``: PNG
  images with a JSON sidecar of labelled boxes each).

Kinds: ``circle``, ``square``, ``triangle`` (the shipped heads), and
``cross`` and ``ring`` (not shipped: use them to train a new head).

Run ``python -m actors.lib.scenes DIR --n 300 --kinds circle,cross`` to write a
dataset folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

SHIPPED_KINDS = ("circle", "square", "triangle")
ALL_KINDS = ("circle", "square", "triangle", "cross", "ring")
FRAME_W, FRAME_H = 160, 120
"""Default scene size, pixels (the model's input size too)."""
SIZE_RANGE_PX = (14.0, 34.0)
"""Object size (bounding-box side), pixels."""


@dataclass
class SceneObject:
    kind: str
    cx: float
    cy: float
    size: float
    """Side of the bounding box of the upright shape, pixels."""
    angle: float
    """Rotation of triangles and crosses, radians."""
    color: tuple[int, int, int]
    vx: float = 0.0
    """Drift, pixels per second."""
    vy: float = 0.0

    def polygon(self) -> np.ndarray | None:
        """Vertices for polygon kinds, float N x 2; None for round kinds."""
        r = self.size / 2
        if self.kind == "square":
            return np.array([[self.cx - r, self.cy - r], [self.cx + r, self.cy - r],
                             [self.cx + r, self.cy + r], [self.cx - r, self.cy + r]])
        if self.kind == "triangle":
            a = self.angle + np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) - math.pi / 2
            return np.stack([self.cx + r * np.cos(a), self.cy + r * np.sin(a)], axis=1)
        return None

    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box x1, y1, x2, y2, pixels."""
        poly = self.polygon()
        if poly is not None:
            return float(poly[:, 0].min()), float(poly[:, 1].min()), float(poly[:, 0].max()), float(poly[:, 1].max())
        r = self.size / 2
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r

    def draw(self, img: np.ndarray) -> None:
        s = 16  # fixed-point shift: sub-pixel positions for smooth motion
        poly = self.polygon()
        if poly is not None:
            cv2.fillPoly(img, [np.round(poly * s).astype(np.int32)], self.color, cv2.LINE_AA, shift=4)
        elif self.kind == "circle":
            cv2.circle(img, (round(self.cx * s), round(self.cy * s)), round(self.size / 2 * s), self.color, -1,
                       cv2.LINE_AA, shift=4)
        elif self.kind == "ring":
            thick = max(2, round(self.size / 7))
            cv2.circle(img, (round(self.cx * s), round(self.cy * s)), round((self.size - thick) / 2 * s), self.color,
                       thick, cv2.LINE_AA, shift=4)
        elif self.kind == "cross":
            r, w = self.size / 2, max(2.0, self.size / 6)
            for a in (self.angle, self.angle + math.pi / 2):
                dx, dy = math.cos(a), math.sin(a)
                bar = np.array([[-r * dx - w * dy, -r * dy + w * dx], [r * dx - w * dy, r * dy + w * dx],
                                [r * dx + w * dy, r * dy - w * dx], [-r * dx + w * dy, -r * dy - w * dx]])
                bar += (self.cx, self.cy)
                cv2.fillPoly(img, [np.round(bar * s).astype(np.int32)], self.color, cv2.LINE_AA, shift=4)
        else:
            raise ValueError(f"unknown object kind {self.kind!r}; expected one of {', '.join(ALL_KINDS)}")

    def cross_box(self) -> tuple[float, float, float, float]:
        """Crosses rotate: their box is that of the rotated bars."""
        r, w = self.size / 2, max(2.0, self.size / 6)
        ext = max(abs(r * math.cos(a)) + abs(w * math.sin(a)) for a in (self.angle, self.angle + math.pi / 2))
        return self.cx - ext, self.cy - ext, self.cx + ext, self.cy + ext


def object_box(obj: SceneObject) -> tuple[float, float, float, float]:
    return obj.cross_box() if obj.kind == "cross" else obj.box()


@dataclass
class Labelled:
    """A rendered scene and its ground truth."""

    image: np.ndarray
    """uint8 H x W x 3, BGR."""
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    """Kind -> float32 K x 4 boxes (x1, y1, x2, y2, pixels), clipped to the image."""

    def boxes_of(self, kind: str) -> np.ndarray:
        return self.boxes.get(kind, np.zeros((0, 4), np.float32))


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth colour gradient with low-frequency blotches and sensor noise."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / max(w, h) + 0.5
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    blotches = cv2.resize(rng.normal(0, 18, (6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = img + blotches + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasting_color(rng: np.random.Generator, bg: np.ndarray) -> tuple[int, int, int]:
    """A colour at least ~70 grey levels (summed over channels: 150) away from the local background."""
    for _ in range(50):
        color = rng.integers(0, 256, 3)
        if np.abs(color - bg).sum() > 150:
            return int(color[0]), int(color[1]), int(color[2])
    return tuple(int(v) for v in (255 - bg).clip(0, 255))  # type: ignore[return-value]


def _place(rng: np.random.Generator, kinds: Sequence[str], n: int, w: int, h: int,
           placed: list[SceneObject], bg: np.ndarray) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for _ in range(n):
        for _try in range(30):
            size = float(rng.uniform(*SIZE_RANGE_PX))
            r = size / 2 + 1
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            if all(math.hypot(cx - o.cx, cy - o.cy) > (size + o.size) / 2 + 2 for o in placed + objects):
                kind = str(rng.choice(list(kinds)))
                local = bg[int(cy), int(cx)].astype(int)
                objects.append(SceneObject(kind, cx, cy, size, float(rng.uniform(0, 2 * math.pi)),
                                           _contrasting_color(rng, local)))
                break
    return objects


def render(bg: np.ndarray, objects: Sequence[SceneObject], blur_px: float = 0.0,
           out: np.ndarray | None = None) -> Labelled:
    """``objects`` drawn on a copy of ``bg``, or into ``out`` (an array of ``bg``'s shape and dtype, e.g. a
    frame on loan from the publisher: ``Publisher.loan``)."""
    if out is None:
        img = bg.copy()
    else:
        np.copyto(out, bg)
        img = out
    h, w = img.shape[:2]
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for obj in objects:
        obj.draw(img)
        x1, y1, x2, y2 = object_box(obj)
        boxes.setdefault(obj.kind, []).append((max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)))
    if blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_px)
        if out is not None:
            np.copyto(out, img)
            img = out
    return Labelled(img, {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in boxes.items()})


def random_scene(seed: int, kinds: Sequence[str] = SHIPPED_KINDS, *, width: int = FRAME_W, height: int = FRAME_H,
                 n_objects: tuple[int, int] = (1, 5)) -> Labelled:
    """One independent scene: the same seed gives the same pixels and boxes."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, width, height)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objects = _place(rng, kinds, n, width, height, [], bg)
    return render(bg, objects, blur_px=float(rng.choice([0.0, 0.0, 0.6])))


class MovingScene:
    """The camera's synthetic source: objects drift across a fixed background
    and bounce off the edges; ``frame(t_s)`` renders them at time ``t_s``."""

    def __init__(self, seed: int = 0, kinds: Sequence[str] = SHIPPED_KINDS, *, width: int = FRAME_W,
                 height: int = FRAME_H, n_objects: int = 4, speed_px_s: float = 12.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        self.bg = _background(self.rng, width, height)
        self.objects = _place(self.rng, kinds, n_objects, width, height, [], self.bg)
        for obj in self.objects:
            a = self.rng.uniform(0, 2 * math.pi)
            obj.vx, obj.vy = speed_px_s * math.cos(a), speed_px_s * math.sin(a)
        self._t_s = 0.0

    def frame(self, t_s: float, out: np.ndarray | None = None) -> Labelled:
        """The scene at ``t_s`` seconds, drawn into ``out`` when given (``render``)."""
        dt = max(0.0, t_s - self._t_s)
        self._t_s = t_s
        for obj in self.objects:
            r = obj.size / 2 + 1
            obj.cx += obj.vx * dt
            obj.cy += obj.vy * dt
            if not r <= obj.cx <= self.width - r:
                obj.vx = -obj.vx
                obj.cx = min(max(obj.cx, r), self.width - r)
            if not r <= obj.cy <= self.height - r:
                obj.vy = -obj.vy
                obj.cy = min(max(obj.cy, r), self.height - r)
        return render(self.bg, self.objects, out=out)


# -- dataset folders ---------------------------------------------------------

def write_dataset(folder: Path, n: int, kinds: Sequence[str], seed: int) -> list[Path]:
    """``n`` scenes as ``NNNNN.png`` + ``NNNNN.json`` ({"objects": [{"label", "box"}]})."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        scene = random_scene(seed * 1_000_003 + i, kinds)
        stem = folder / f"{i:05d}"
        if not cv2.imwrite(str(stem.with_suffix(".png")), scene.image):
            raise OSError(f"{stem}.png: OpenCV could not write it")
        objects = [{"label": k, "box": [round(float(v), 2) for v in box]}
                   for k, boxes in scene.boxes.items() for box in boxes]
        stem.with_suffix(".json").write_text(json.dumps({"objects": objects}))
        written.append(stem.with_suffix(".png"))
    return written


def read_dataset(folder: Path) -> list[tuple[str, Labelled]]:
    """Every ``*.png`` with its ``*.json`` sidecar, sorted by name. A sample
    without a sidecar, or with an unreadable one, is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such dataset folder")
    samples = []
    for png in sorted(folder.glob("*.png")):
        sidecar = png.with_suffix(".json")
        try:
            objects = json.loads(sidecar.read_text())["objects"]
            boxes: dict[str, list[list[float]]] = {}
            for o in objects:
                boxes.setdefault(str(o["label"]), []).append([float(v) for v in o["box"]])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{sidecar}: expected {{\"objects\": [{{\"label\": str, \"box\": [x1, y1, x2, y2]}}]}}"
                             f" ({exc})") from exc
        image = cv2.imread(str(png), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{png}: not a readable image")
        samples.append((png.name, Labelled(image, {k: np.asarray(v, np.float32).reshape(-1, 4)
                                                   for k, v in boxes.items()})))
    if not samples:
        raise ValueError(f"{folder}: no *.png samples (each needs a *.json sidecar with its boxes)")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.lib.scenes",
                                     description="Write a folder of labelled synthetic scenes.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=300, help="number of scenes")
    parser.add_argument("--kinds", default=",".join(SHIPPED_KINDS),
                        help=f"comma-separated object kinds out of {', '.join(ALL_KINDS)}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; expected some of {', '.join(ALL_KINDS)}")
    written = write_dataset(args.folder, args.n, kinds, args.seed)
    print(f"wrote {len(written)} scenes to {args.folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
