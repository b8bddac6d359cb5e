"""The recorder kind: bus topics into crash-safe, rotating MCAP files (``bus/recording``)."""

from actors.recorder.settings import RecorderSettings
from actors.spec import KindSpec
from bus.messages import Alert

SPEC = KindSpec(
    name="recorder",
    description="records bus topics into crash-safe MCAP files with rotation and retention",
    actor="actors.recorder.actor:RecorderActor",
    settings=RecorderSettings,
    publishes=(Alert,),
)
