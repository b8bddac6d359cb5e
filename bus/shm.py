"""Shared memory for large arrays between processes of one host (docs/wire.md, section 12).

A publisher that has local subscribers writes each array above a size
threshold into a slot of its own *segment*: a file in ``/dev/shm`` that is
a ring of N equal slots, and puts a reference ``[dtype, shape, segment,
slot, generation]`` in the body instead of the bytes. A reader maps the
segment read-only once, copies the array out and then checks the slot's
generation again: a slot overwritten meanwhile (the publisher went N arrays
further) or left half-written (the publisher was killed mid-write) has
another generation, and the array is dropped and counted, never delivered
as wrong data.

Why not ``multiprocessing.shared_memory``: on Python 3.11 its resource
tracker unlinks a segment when any attaching process exits. Segments here
are plain files opened with ``os.open`` and mapped with ``mmap``; nobody
but the writer (at close), the supervisor (when the writer exited) and the
sweep (writer's process gone) removes them.

Writes follow a seqlock: the slot's generation turns odd, the bytes are
copied, the generation turns even (+2 from before). x86-64 keeps stores and
loads in program order, which this relies on; the bytes are copied by
numpy, the generations written by ``struct`` into the same mapping.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import re
import stat
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHM_DIR = Path("/dev/shm")
"""Where segments live (tmpfs on Linux)."""
SEGMENT_PREFIX = "sensorium-"
_NAME_RE = re.compile(r"sensorium-(\d{1,10})-([0-9a-f]{1,16})-(\d{1,6})")
"""``sensorium-PID-RANDOM-N``: owner process id, the random part of its instance id, segment number."""

MAGIC = b"SNSMSHM1"
LAYOUT_VERSION = 1
HEADER_BYTES = 64
SLOT_HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIQI")
"""magic, layout version, slot count, slot data bytes, owner pid (then zeros up to 64 bytes)."""
_GEN = struct.Struct("<Q")
_BYTE = np.dtype(np.uint8)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
"""Map with the page tables filled: otherwise the first touch of every 4 KiB page of a slot is a page
fault, ~225 per 640x480x3 frame, in the writer and in every reader."""
_SLOT_META = struct.Struct("<QQ")
"""generation, bytes written: the start of each slot's 64-byte header."""

DEFAULT_THRESHOLD_BYTES = 64 * 1024
DEFAULT_SLOTS = 8
MAX_SEGMENT_SHARE = 0.25
"""A segment may take at most this share of the free space of SHM_DIR; beyond it: inline."""


class ShmUnavailable(OSError):
    """No segment could be made (no /dev/shm, too small, full): the caller goes inline."""


class ShmDropped(Exception):
    """A referenced array that is gone: its slot was overwritten or half-written, or its segment vanished."""

    def __init__(self, reason: str, segment: str, slot: int) -> None:
        self.reason = reason
        self.segment = segment
        self.slot = slot
        self.topic: str | None = None
        self.message: Any = None
        """The message whose array was lost (header only), set by the decoder: its seq still counts."""
        super().__init__(f"{reason} (segment={segment}, slot={slot})")


def segment_path(name: str, directory: Path = SHM_DIR) -> Path:
    return directory / name


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def owner_pid(name: str) -> int | None:
    m = _NAME_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class ShmRing:
    """The writer's segment: ``slots`` slots of ``slot_bytes`` each, written round-robin."""

    def __init__(self, name: str, slots: int, slot_bytes: int, directory: Path = SHM_DIR) -> None:
        if slots < 1:
            raise ValueError(f"a ring needs at least 1 slot, got {slots}")
        self.name = name
        self.slots = slots
        self.slot_bytes = _round_up(max(slot_bytes, 64), 4096)
        self.stride = SLOT_HEADER_BYTES + self.slot_bytes
        self.size = HEADER_BYTES + slots * self.stride
        self.path = segment_path(name, directory)
        try:
            free = os.statvfs(directory)
            free_bytes = free.f_bavail * free.f_frsize
        except OSError as exc:
            raise ShmUnavailable(exc.errno or errno.ENOENT, f"no shared memory folder {directory}: {exc}") from exc
        if self.size > free_bytes * MAX_SEGMENT_SHARE:
            raise ShmUnavailable(errno.ENOSPC, f"{directory} too small: a segment of {self.size} bytes, "
                                 f"{free_bytes} bytes free")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ShmUnavailable(exc.errno or errno.EIO, f"cannot create {self.path}: {exc}") from exc
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            # fallocate, not ftruncate: tmpfs hands out pages lazily and a
            # full one answers a write with SIGBUS; reserve them now or fail here.
            os.posix_fallocate(fd, 0, self.size)
            self._mm = mmap.mmap(fd, self.size, mmap.MAP_SHARED | _POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise ShmUnavailable(exc.errno or errno.EIO, f"cannot reserve {self.size} bytes in {self.path}: "
                                 f"{exc}") from exc
        os.close(fd)
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)
        start = self._buf.__array_interface__["data"][0]
        self.address_range = (start, start + self.size)
        """Where the mapping lies in this process: [start, end) addresses."""
        _HEADER.pack_into(self._mm, 0, MAGIC, LAYOUT_VERSION, slots, self.slot_bytes, os.getpid())
        self._gens = [0] * slots
        self._next = 0
        self.loaned: int | None = None
        """The slot on loan (``loan``), which ``put`` passes over until it is committed."""
        self.closed = False

    def _take_slot(self) -> int:
        slot = self._next
        if slot == self.loaned:
            if self.slots == 1:
                raise ValueError(f"the only slot of {self.name} is on loan")
            slot = (slot + 1) % self.slots
        self._next = (slot + 1) % self.slots
        return slot

    def put(self, data: np.ndarray) -> tuple[int, int]:
        """Copy ``data`` (1-d uint8) into the next slot; returns (slot, generation)."""
        n = data.nbytes
        if n > self.slot_bytes:
            raise ValueError(f"{n} bytes do not fit a slot of {self.slot_bytes}")
        slot = self._take_slot()
        at = HEADER_BYTES + slot * self.stride
        gen = self._gens[slot]
        mm = self._mm
        _GEN.pack_into(mm, at, gen + 1)          # odd: being written
        self._buf[at + SLOT_HEADER_BYTES:at + SLOT_HEADER_BYTES + n] = data
        _SLOT_META.pack_into(mm, at, gen + 2, n)  # even: complete
        self._gens[slot] = gen + 2
        return slot, gen + 2

    def loan(self, nbytes: int, shape: tuple[int, ...] | None = None,
             dtype: Any = _BYTE) -> tuple[int, np.ndarray]:
        """Lend the next slot to a producer that writes ``nbytes`` into it in place (no copy at publish):
        returns (slot, a writable array of its first ``nbytes``: ``shape`` and ``dtype``, or 1-d of ``dtype``).
        Its generation turns odd now, as ``put``'s does before the copy, so a reader holding an older reference
        of the slot drops it; one slot at a time (a loan not committed is lost when the next is made:
        ``commit`` it empty). A shape or dtype that does not make ``nbytes`` raises ValueError and lends
        nothing."""
        dtype = np.dtype(dtype)
        if shape is None:
            if nbytes % dtype.itemsize:
                raise ValueError(f"{nbytes} bytes are no whole number of {dtype}")
            shape = (nbytes // dtype.itemsize,)
        elif math.prod(shape) * dtype.itemsize != nbytes or min(shape, default=0) < 0:
            raise ValueError(f"{dtype}{tuple(shape)} is not {nbytes} bytes")
        if nbytes > self.slot_bytes:
            raise ValueError(f"{nbytes} bytes do not fit a slot of {self.slot_bytes}")
        if self.loaned is not None:
            self.commit(self.loaned, 0)
        slot = self._take_slot()
        at = HEADER_BYTES + slot * self.stride
        # One numpy constructor, not a slice, a view and a reshape (a paced producer runs this cold); made
        # before the generation moves, so that an array numpy refuses leaves the slot as it was.
        array = np.ndarray(shape, dtype, self._buf, at + SLOT_HEADER_BYTES)
        gen = self._gens[slot] + 1
        _GEN.pack_into(self._mm, at, gen)  # odd: being written
        self._gens[slot] = gen
        self.loaned = slot
        return slot, array

    def slot_address(self, slot: int) -> int:
        """Where ``slot``'s bytes start in this process (an address inside ``address_range``)."""
        return self.address_range[0] + HEADER_BYTES + slot * self.stride + SLOT_HEADER_BYTES

    def commit(self, slot: int, nbytes: int) -> int:
        """End the loan of ``slot``, whose first ``nbytes`` are written; returns its (even) generation."""
        if slot != self.loaned:
            raise ValueError(f"slot {slot} of {self.name} is not on loan")
        gen = self._gens[slot] + 1
        _SLOT_META.pack_into(self._mm, HEADER_BYTES + slot * self.stride, gen, nbytes)  # even: complete
        self._gens[slot] = gen
        self.loaned = None
        return gen

    def write_torn(self, data: np.ndarray) -> tuple[int, int]:
        """Start a write and stop half-way, as a writer killed mid-copy leaves it (tests):
        returns the reference a reader would have been sent had the write completed."""
        slot = self._take_slot()
        at = HEADER_BYTES + slot * self.stride
        gen = self._gens[slot]
        _GEN.pack_into(self._mm, at, gen + 1)
        half = data.nbytes // 2
        self._buf[at + SLOT_HEADER_BYTES:at + SLOT_HEADER_BYTES + half] = data[:half]
        self._gens[slot] = gen + 1
        return slot, gen + 2

    def close(self, unlink: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        del self._buf
        try:
            self._mm.close()
        except BufferError:
            pass  # a view is still alive; the mapping goes with the process
        if unlink:
            self.path.unlink(missing_ok=True)


@dataclass
class _Mapping:
    mm: mmap.mmap
    buf: np.ndarray
    slots: int
    slot_bytes: int
    stride: int
    inode: int


class ShmReader:
    """Maps writers' segments read-only (once each) and takes arrays out of them."""

    MAX_MAPPINGS = 64

    def __init__(self, directory: Path = SHM_DIR, views: bool = False) -> None:
        self.directory = directory
        self.views = views
        """Hand out read-only views of the mapping instead of copies; their generations are kept in
        ``taken`` for the consumer's check after reading (``still_valid``)."""
        self.taken: list[tuple[Any, int, int]] = []
        self._maps: OrderedDict[str, _Mapping] = OrderedDict()

    def still_valid(self, taken: list[tuple[Any, int, int]]) -> bool:
        """Whether the slots behind views (``taken``) still hold the generations they had when taken."""
        for mm, at, gen in taken:
            try:
                if _GEN.unpack_from(mm, at)[0] != gen:
                    return False
            except ValueError:  # unmapped meanwhile
                return False
        return True

    def take(self, segment: str, slot: int, gen: int, dtype: np.dtype, shape: list[int]) -> np.ndarray:
        """A copy of the array in ``slot``, if its generation is ``gen`` before and after the copy;
        raises ShmDropped otherwise, ValueError for a reference that cannot be right. With ``views``,
        a read-only view checked before only: the consumer checks again after reading it."""
        m = self._maps.get(segment)
        if m is None:
            m = self._map(segment)
        if not (isinstance(slot, int) and 0 <= slot < m.slots):
            raise ValueError(f"slot {slot!r} out of range ({m.slots} slots in {segment})")
        n = math.prod(shape) * dtype.itemsize
        if n > m.slot_bytes:
            raise ValueError(f"array of {n} bytes does not fit a slot of {m.slot_bytes} in {segment}")
        at = HEADER_BYTES + slot * m.stride
        if _GEN.unpack_from(m.mm, at)[0] != gen:
            raise ShmDropped("slot overwritten before the read", segment, slot)
        start = at + SLOT_HEADER_BYTES
        if self.views:
            self.taken.append((m.mm, at, gen))
            # One constructor instead of slice, view and reshape: a paced reader runs this cold, where each
            # numpy call costs microseconds.
            return np.ndarray(shape, dtype, m.buf, start)
        out = m.buf[start:start + n].copy()
        if _GEN.unpack_from(m.mm, at)[0] != gen:
            raise ShmDropped("slot overwritten during the read", segment, slot)
        return out.view(dtype).reshape(shape)

    def _map(self, segment: str) -> _Mapping:
        if not valid_name(segment):
            raise ValueError(f"segment name {segment!r} is not sensorium-PID-RANDOM-N")
        path = segment_path(segment, self.directory)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ShmDropped("segment gone", segment, -1) from exc
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER_BYTES:
                raise ValueError(f"segment {segment} of {st.st_size} bytes has no header")
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED | _POPULATE, mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, slots, slot_bytes, _pid = _HEADER.unpack_from(mm, 0)
        stride = SLOT_HEADER_BYTES + slot_bytes
        if magic != MAGIC or version != LAYOUT_VERSION or HEADER_BYTES + slots * stride > st.st_size:
            mm.close()
            raise ValueError(f"segment {segment} is not a Sensorium ring of layout {LAYOUT_VERSION}")
        self._forget_gone()
        m = _Mapping(mm, np.frombuffer(mm, dtype=np.uint8), slots, slot_bytes, stride, st.st_ino)
        self._maps[segment] = m
        while len(self._maps) > self.MAX_MAPPINGS:
            self._unmap(next(iter(self._maps)))
        return m

    def _forget_gone(self) -> None:
        """Unmap segments whose file was removed (a writer that exited): their memory goes back."""
        for name, m in list(self._maps.items()):
            try:
                if os.stat(segment_path(name, self.directory)).st_ino == m.inode:
                    continue
            except FileNotFoundError:
                pass
            self._unmap(name)

    def _unmap(self, name: str) -> None:
        m = self._maps.pop(name)
        del m.buf
        try:
            m.mm.close()
        except BufferError:
            pass

    def close(self) -> None:
        for name in list(self._maps):
            self._unmap(name)


# -- clean-up: the supervisor's part -------------------------------------------

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a name's PID no process can have
        return False
    except PermissionError:
        return True
    return True


def owned_names(directory: Path, matches: Callable[[str], bool], sockets_only: bool = False) -> list[str]:
    """Names in ``directory`` that ``matches`` accepts and this user owns (``sockets_only``: unix sockets
    only): the files a process may clean up or connect to. A missing folder has none; another failure to
    list it raises OSError."""
    uid = os.getuid()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    out = []
    for e in entries:
        if matches(e.name):
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_uid == uid and (not sockets_only or stat.S_ISSOCK(st.st_mode)):
                out.append(e.name)
    return out


def segments(directory: Path = SHM_DIR) -> list[str]:
    """Names of all Sensorium segments of this user in ``directory`` (none when it cannot be listed)."""
    try:
        return owned_names(directory, valid_name)
    except OSError:
        return []


def remove_segments_of(pid: int, directory: Path = SHM_DIR) -> list[str]:
    """Remove the segments of process ``pid`` (which has exited); returns their names."""
    removed = []
    for name in segments(directory):
        if owner_pid(name) == pid:
            segment_path(name, directory).unlink(missing_ok=True)
            removed.append(name)
    return removed


def sweep_dead(directory: Path = SHM_DIR) -> list[str]:
    """Remove the segments whose owner process no longer exists (a crashed session); returns their names."""
    removed = []
    for name in segments(directory):
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid):
            segment_path(name, directory).unlink(missing_ok=True)
            removed.append(name)
    return removed
