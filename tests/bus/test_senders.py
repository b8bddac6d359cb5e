"""SenderBook: two live processes under one name are found; a restart is not one (fake clock)."""

from __future__ import annotations

from bus.senders import SenderBook, new_instance_id, pid_of_iid


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def interleave(book: SenderBook, clock: Clock, iids: list[str], rounds: int, dt: float = 0.1) -> None:
    for _ in range(rounds):
        for iid in iids:
            book.observe("h", "sensor", iid)
            clock.t += dt


def test_two_live_processes_under_one_name_are_a_duplicate_naming_both_pids():
    clock = Clock()
    book = SenderBook(clock=clock)
    interleave(book, clock, ["100-aa", "200-bb"], rounds=10)
    [dup] = book.duplicates()
    assert (dup.host, dup.src, dup.iids, dup.pids()) == ("h", "sensor", {"100-aa", "200-bb"}, [100, 200])
    clock.t += 10  # one of them stopped: the duplicate is over
    assert book.duplicates() == []


def test_a_restart_is_not_a_duplicate_even_when_the_old_instances_last_messages_drain_late():
    clock = Clock()
    book = SenderBook(clock=clock)
    interleave(book, clock, ["100-aa"], rounds=5)
    interleave(book, clock, ["200-bb", "100-aa"], rounds=2, dt=0.001)  # the broker drains the old one's backlog
    interleave(book, clock, ["200-bb"], rounds=50)
    assert book.duplicates() == []


def test_many_restarts_are_not_a_duplicate():
    clock = Clock()
    book = SenderBook(clock=clock)
    for pid in range(100, 140):
        interleave(book, clock, [f"{pid}-00"], rounds=3)
    assert book.duplicates() == []


def test_two_publishers_of_one_process_are_not_two_processes():
    clock = Clock()
    book = SenderBook(clock=clock)
    interleave(book, clock, ["100-aa", "100-bb"], rounds=20)
    assert book.duplicates() == []


def test_other_hosts_are_other_names_and_opaque_iids_still_count():
    clock = Clock()
    book = SenderBook(clock=clock)
    for _ in range(20):
        book.observe("h1", "sensor", "x")
        book.observe("h2", "sensor", "y")
        clock.t += 0.1
    assert book.duplicates() == []
    interleave(book, clock, ["opaque-one", "opaque-two"], rounds=10)
    [dup] = book.duplicates()
    assert dup.pids() == [] and dup.iids == {"opaque-one", "opaque-two"}


def test_instance_ids_are_fresh_and_carry_the_pid():
    import os

    a, b = new_instance_id(), new_instance_id()
    assert a != b and pid_of_iid(a) == os.getpid()
    assert pid_of_iid("js-client") is None and pid_of_iid("") is None


def test_a_header_host_is_this_hosts_when_empty_or_its_name(monkeypatch):
    from bus import senders

    monkeypatch.setattr(senders, "_HOST", "box")
    assert senders.from_this_host("") and senders.from_this_host("box")
    assert not senders.from_this_host("cam") and not senders.from_this_host("Box")
