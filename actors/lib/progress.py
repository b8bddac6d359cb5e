"""Progress of the long commands (batch runs, training), on a terminal and in a log.

On a terminal ``progress`` is a tqdm bar, redrawn in place. When the stream
is not a terminal (a pipe, a file, a CI log) a redrawn bar would leave one
long line of carriage returns, so it prints plain lines instead: one each
time another ``step_percent`` of the total is done, and the last one, each
with the count, the percentage, the elapsed time and the postfix. Both have
the tqdm calls the commands use: ``update``, ``set_postfix``,
``set_postfix_str``, ``write``, ``close``, iteration and ``with``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class LineProgress:
    """A progress report as plain lines: ``DESC: 3/10 file (30%), 12.5 s, POSTFIX``."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, step_percent: float = 10.0) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.step_percent = step_percent
        self.n = 0
        self.postfix = ""
        self._started = time.monotonic()
        self._printed_step = 0
        self._printed_n = 0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total:
            step = int(self.n * 100 / self.total // self.step_percent)
            if step > self._printed_step or self.n >= self.total:
                self._printed_step = step
                self._line()
        else:
            self._line()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:  # noqa: ARG002 - tqdm's signature
        self.postfix = s

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def write(self, s: str, file: TextIO | None = None) -> None:
        print(s, file=file or self.file, flush=True)

    def close(self) -> None:
        if not self._closed and self.n != self._printed_n:
            self._line()  # where it stopped (an early stop, an error)
        self._closed = True

    def _line(self) -> None:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{percent}, {time.monotonic() - self._started:.1f} s{postfix}",
              file=self.file, flush=True)
        self._printed_n = self.n
        self._printed_step = max(self._printed_step, int(self.n * 100 / self.total // self.step_percent)
                                 if self.total else 0)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(LineProgress):
    """``disable=True``: counts, prints nothing (``write`` still writes: it carries messages)."""

    def _line(self) -> None:
        pass


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             file: TextIO | None = None, disable: bool = False, mininterval: float = 0.5,
             step_percent: float = 10.0) -> Any:
    """A tqdm bar on a terminal, ``LineProgress`` lines otherwise, ``disable``: nothing (messages still go
    through ``write``)."""
    stream = file if file is not None else sys.stderr
    if disable:
        return _Silent(iterable, total=total, desc=desc, unit=unit, file=stream)
    if is_terminal(stream):
        from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, mininterval=mininterval)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, file=stream, step_percent=step_percent)


class StageProgress:
    """``callback(stage, i, n)`` (item i of n of a stage is starting) as one ``progress`` per stage."""

    def __init__(self, file: TextIO | None = None, disable: bool = False) -> None:
        self.file, self.disable = file, disable
        self._stage: str | None = None
        self._bar: Any = None

    def __call__(self, stage: str, i: int, n: int) -> None:
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = progress(total=n, desc=stage, unit="step", file=self.file, disable=self.disable)
        self._bar.update(i + 1 - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = self._stage = None
