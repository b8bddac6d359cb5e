"""The bridge kind: this host's bus joined to other hosts over tcp with CURVE (README, "Two hosts")."""

from actors.bridge.settings import BridgeSettings
from actors.bridge.preflight import check_bridge
from actors.spec import KindSpec
from bus.messages import LinkState

SPEC = KindSpec(
    name="bridge",
    description="links this host's bus to peer hosts over tcp+CURVE: configured prefixes each way, sys.link",
    actor="actors.bridge.actor:BridgeActor",
    settings=BridgeSettings,
    publishes=(LinkState,),
    preflight=(check_bridge,),
    doc="README.md#two-hosts",
)
