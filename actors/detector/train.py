"""Training: CenterNet targets and loss, joint training of the backbone with
its heads, and training one head on the frozen backbone.

* ``train_joint`` trains a fresh backbone together with one head per signal
  (how the shipped weights are made: ``python -m actors.detector.make_weights``).
* ``train_head`` trains one head on features of a frozen backbone (what
  ``sensorium models train`` does): the features of every sample are computed
  once, so an epoch costs only the head.

Both report progress on stderr (actors.lib.progress: a bar on a terminal, lines in a log), stop early when the validation F1
stops improving, and return the per-epoch curve for the training-curve plot.
"""

from __future__ import annotations

import copy
import io
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actors.detector import metrics as M
from actors.detector.model import INPUT_HW, STRIDE, Backbone, Head, Hydra, decode, preprocess
from actors.lib.progress import progress as progress_bar
from actors.lib.scenes import Labelled

SCORE_THRESHOLD = 0.3
"""Heatmap score above which a peak is a detection (training metrics and the detector's default)."""


# -- targets and loss -----------------------------------------------------------

def make_targets(boxes: np.ndarray, frame_hw: tuple[int, int], input_hw: tuple[int, int] = INPUT_HW) -> np.ndarray:
    """5 x h x w target of one signal in one image: Gaussian centre heatmap
    (1 at each centre cell), log box size in cells, centre offset in the cell."""
    h, w = input_hw[0] // STRIDE, input_hw[1] // STRIDE
    target = np.zeros((6, h, w), np.float32)  # channel 5: regression mask
    sx = input_hw[1] / frame_hw[1] / STRIDE
    sy = input_hw[0] / frame_hw[0] / STRIDE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
        bw, bh = (x2 - x1) * sx, (y2 - y1) * sy
        if bw <= 0.25 or bh <= 0.25:
            continue
        cx, cy = (x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        sigma = max(0.5, min(bw, bh) / 6.0)
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2))
        target[0] = np.maximum(target[0], g)
        target[0, iy, ix] = 1.0
        target[1:5, iy, ix] = (math.log(bw), math.log(bh), cx - ix, cy - iy)
        target[5, iy, ix] = 1.0
    return target


def centernet_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Focal loss on the heatmap (CenterNet: alpha 2, beta 4) + L1 on size and offset at centres."""
    p = torch.sigmoid(out[:, 0]).clamp(1e-4, 1 - 1e-4)
    heat, mask = target[:, 0], target[:, 5]
    pos = heat.eq(1.0).float()
    n_pos = pos.sum().clamp(min=1.0)
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - pos)).sum()
    reg = (F.l1_loss(out[:, 1:5], target[:, 1:5], reduction="none").sum(1) * mask).sum()
    return -(pos_loss + neg_loss) / n_pos + 0.5 * reg / n_pos


# -- data ---------------------------------------------------------------------

@dataclass
class Batch:
    """Preprocessed inputs and per-signal targets of a list of samples."""

    x: torch.Tensor
    """N x 3 x H x W float."""
    targets: dict[str, torch.Tensor]
    """Signal -> N x 6 x h x w."""
    truth: dict[str, list[np.ndarray]]
    """Signal -> true boxes per sample (frame pixels)."""
    frame_hw: list[tuple[int, int]]


def prepare(samples: Sequence[Labelled], signals: Sequence[str]) -> Batch:
    x = torch.cat([preprocess(s.image) for s in samples])
    targets = {sig: torch.from_numpy(np.stack([make_targets(s.boxes_of(sig), s.image.shape[:2]) for s in samples]))
               for sig in signals}
    truth = {sig: [s.boxes_of(sig) for s in samples] for sig in signals}
    return Batch(x, targets, truth, [s.image.shape[:2] for s in samples])


def evaluate(outputs: torch.Tensor, truth: list[np.ndarray], frame_hw: list[tuple[int, int]],
             score_threshold: float = SCORE_THRESHOLD) -> M.DetectionMetrics:
    """Metrics of one signal's head outputs (N x 5 x h x w) against the true boxes."""
    samples = []
    for i in range(outputs.shape[0]):
        det = decode(outputs[i:i + 1], frame_hw=frame_hw[i], score_threshold=score_threshold)[0]
        samples.append((det.boxes, det.scores, truth[i]))
    return M.score(samples)


@dataclass
class Curve:
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_f1: list[float] = field(default_factory=list)

    def add(self, epoch: int, train_loss: float, val_loss: float, val_f1: float) -> None:
        self.epoch.append(epoch)
        self.train_loss.append(round(train_loss, 5))
        self.val_loss.append(round(val_loss, 5))
        self.val_f1.append(round(val_f1, 4))

    def to_dict(self) -> dict[str, list]:
        return {"epoch": self.epoch, "train_loss": self.train_loss, "val_loss": self.val_loss, "val_f1": self.val_f1}


def plot_curve(curve: Curve, title: str) -> bytes:
    """The training curve as PNG bytes: losses (left axis) and validation F1 (right axis)."""
    import matplotlib  # noqa: PLC0415 - plotting only when a curve is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=80)
    ax.plot(curve.epoch, curve.train_loss, label="train loss")
    ax.plot(curve.epoch, curve.val_loss, label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(curve.epoch, curve.val_f1, color="green", marker="o", markersize=3, label="val F1 @ IoU 0.5")
    ax2.set_ylabel("F1")
    ax2.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


class BestEpoch:
    """Early stopping on a validation score: keeps a copy of the weights of the best epoch and says
    when ``patience`` epochs in a row have not improved on it."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.score = -1.0
        self.epoch = 0
        self.state: dict[str, Any] | None = None
        self.metrics: Any = None
        self._bad = 0

    def update(self, epoch: int, score: float, module: nn.Module, metrics: Any) -> bool:
        """Record one epoch; True when training should stop."""
        if score > self.score + 1e-6:
            self.score, self.epoch, self.metrics, self._bad = score, epoch, metrics, 0
            self.state = copy.deepcopy(module.state_dict())
            return False
        self._bad += 1
        return self._bad >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Load the best epoch's weights back into ``module`` and put it in eval mode."""
        assert self.state is not None, "no epoch was recorded"
        module.load_state_dict(self.state)
        module.eval()


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# -- joint training (the shipped backbone) ----------------------------------------

@dataclass
class JointResult:
    model: Hydra
    metrics: dict[str, M.DetectionMetrics]
    curve: Curve
    epochs_run: int
    seconds: float


def train_joint(train: Batch, val: Batch, signals: Sequence[str], *, epochs: int = 30, batch_size: int = 32,
                lr: float = 3e-3, patience: int = 4, seed: int = 0, progress: bool = True) -> JointResult:
    """A fresh backbone and one head per signal, trained together; the best epoch (mean val F1) is kept."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    backbone = Backbone()
    model = Hydra(backbone, {s: Head(backbone.out_channels) for s in signals})
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    n = train.x.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    curve, best, t0 = Curve(), BestEpoch(patience), time.monotonic()
    bar = progress_bar(range(1, epochs + 1), desc="joint", unit="epoch", file=sys.stderr, disable=not progress)
    metrics: dict[str, M.DetectionMetrics] = {}
    epoch = 0
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in _batches(n, batch_size, rng):
            t = torch.from_numpy(idx)
            outs = model(train.x[t])
            loss = sum(centernet_loss(outs[s], train.targets[s][t]) for s in signals)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            outs = {s: [] for s in signals}
            vloss = 0.0
            for i in range(0, val.x.shape[0], 128):
                o = model(val.x[i:i + 128])
                for s in signals:
                    outs[s].append(o[s])
                    vloss += float(centernet_loss(o[s], val.targets[s][i:i + 128])) * o[s].shape[0]
            metrics = {s: evaluate(torch.cat(outs[s]), val.truth[s], val.frame_hw) for s in signals}
        mean_f1 = float(np.mean([m.f1 for m in metrics.values()]))
        curve.add(epoch, total / n, vloss / val.x.shape[0], mean_f1)
        bar.set_postfix(loss=f"{total / n:.3f}", f1=" ".join(f"{s[:3]}={m.f1:.3f}" for s, m in metrics.items()))
        if best.update(epoch, mean_f1, model, metrics):
            break
    bar.close()
    best.restore(model)
    return JointResult(model, best.metrics, curve, epoch, time.monotonic() - t0)


# -- one head on the frozen backbone ------------------------------------------------

@dataclass
class HeadResult:
    head: Head
    metrics: M.DetectionMetrics
    """The new head on the validation split."""
    curve: Curve
    epochs_run: int
    best_epoch: int
    seconds: float


@torch.no_grad()
def features_of(backbone: Backbone, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    backbone.eval()
    return torch.cat([backbone(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate_head(head: Head, features: torch.Tensor, truth: list[np.ndarray], frame_hw: list[tuple[int, int]]
                  ) -> M.DetectionMetrics:
    head.eval()
    return evaluate(head(features), truth, frame_hw)


def train_head(backbone: Backbone, signal: str, train: Batch, val: Batch, *, init: Head | None = None,
               epochs: int = 60, batch_size: int = 32, lr: float = 3e-3, patience: int = 6, seed: int = 0,
               progress: bool = True, on_epoch: Callable[[int, float], None] | None = None) -> HeadResult:
    """Train one head on the frozen ``backbone`` (its weights never change); keep the best val-F1 epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    for p in backbone.parameters():
        p.requires_grad_(False)
    f_train, f_val = features_of(backbone, train.x), features_of(backbone, val.x)
    head = copy.deepcopy(init) if init is not None else Head(backbone.out_channels)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    curve, best, t0 = Curve(), BestEpoch(patience), time.monotonic()
    n = f_train.shape[0]
    bar = progress_bar(range(1, epochs + 1), desc=f"train {signal}", unit="epoch", file=sys.stderr,
                       disable=not progress)
    epoch = 0
    for epoch in bar:
        head.train()
        total = 0.0
        for idx in _batches(n, batch_size, rng):
            t = torch.from_numpy(idx)
            loss = centernet_loss(head(f_train[t]), train.targets[signal][t])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        head.eval()
        with torch.no_grad():
            out = head(f_val)
            vloss = float(centernet_loss(out, val.targets[signal]))
        m = evaluate(out, val.truth[signal], val.frame_hw)
        curve.add(epoch, total / n, vloss, m.f1)
        bar.set_postfix(loss=f"{total / n:.3f}", val_f1=f"{m.f1:.3f}")
        if on_epoch:
            on_epoch(epoch, m.f1)
        if best.update(epoch, m.f1, head, m):
            break
    bar.close()
    best.restore(head)
    return HeadResult(head, best.metrics, curve, epoch, best.epoch, time.monotonic() - t0)
