"""The probe: a diagnostic actor for checking a pipeline and drilling faults.

It echoes messages under configured prefixes on ``probe.echo`` (so
``sensorium inject`` can be checked end to end), ticks on ``probe.tick``, and
on request acts out the failures a supervisor must handle: a slow or failing
setup, a crash, a hang. Real process, real sockets: the supervisor's tests
and fire drills use it instead of breaking a real sensor.
"""

from __future__ import annotations

import time

from actors.base import Actor, ActorExit
from actors.probe.settings import ProbeSettings
from bus.envelope import Message


class ProbeActor(Actor[ProbeSettings]):
    kind = "probe"

    def setup(self) -> None:
        s = self.settings
        if s.setup_delay_s:
            time.sleep(s.setup_delay_s)
        if s.fail_setup:
            raise ActorExit(1, "fail_setup is set: setup fails on purpose")
        for prefix in s.echo:
            self.subscribe(prefix, self.echo)
        if s.tick_hz:
            self.ticks = 0
            self.every(1.0 / s.tick_hz, self.tick)
        self.ready_at = time.monotonic()
        if s.crash_after_s or s.hang_after_s:
            self.every(0.05, self.act_out_faults)

    def echo(self, msg: Message) -> None:
        if msg.topic == "probe.echo":  # an echo prefix of "probe." must not feed itself
            return
        self.publish("probe.echo", {"topic": msg.topic, "src": msg.header.src, "seq": msg.header.seq,
                                    "body": msg.body})

    def tick(self) -> None:
        self.publish("probe.tick", {"n": self.ticks})
        self.ticks += 1

    def act_out_faults(self) -> None:
        alive_s = time.monotonic() - self.ready_at
        if self.settings.crash_after_s and alive_s >= self.settings.crash_after_s:
            raise ActorExit(1, "crash_after_s reached: crashing on purpose")
        if self.settings.hang_after_s and alive_s >= self.settings.hang_after_s:
            self.log.warning("hanging_on_purpose")
            while True:  # no heartbeat, no messages: only SIGKILL ends this
                time.sleep(3600)
