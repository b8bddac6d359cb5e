"""The intent kind: spoken commands (``speech.transcript``) become intents by a grammar in the config; risky
ones wait for a spoken or gestured confirmation; confirmed ones become ``action.<name>`` (and optionally run a
program); "what do you see" is answered from the stable tracks on ``assistant.answer``."""

from actors.intent.settings import IntentSettings
from actors.spec import KindSpec
from bus.bodies.intent import (ActionInvoked, ActionResult, AssistantAnswer, ConfirmRequest, IntentCancelled,
                               IntentConfirmed, IntentQueued, IntentRecognized, IntentUnknown, StageTimeout)

SPEC = KindSpec(
    name="intent",
    description="spoken commands to intents (grammar in the config), confirmation of risky ones, actions, answers",
    actor="actors.intent.actor:IntentActor",
    settings=IntentSettings,
    publishes=(IntentRecognized, IntentUnknown, ConfirmRequest, IntentQueued, IntentConfirmed, IntentCancelled,
               ActionInvoked, ActionResult, StageTimeout, AssistantAnswer),
)
