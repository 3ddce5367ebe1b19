"""A draft on its own hardware: in another process or on another host (docs/distributed-draft.md).

``saguaro draft-server`` serves one draft model at ``tcp://HOST:PORT`` (``draft_server.DraftServer``);
a target reaches it with ``Engine(target, draft="tcp://HOST:PORT")`` (``remote_draft.RemoteDraft``),
or starts one itself with ``Engine(..., draft_process=True)`` (``draft_process.DraftProcess``).
Rendezvous goes through a torch.distributed ``TCPStore`` at the draft's address (``rendezvous``);
the round messages travel as frames (the C++ ``wire_format``) over a two-rank gloo process group
(``link.FrameLink``). No KV cache crosses.
"""
from saguaro.distributed.address import parse_address

__all__ = ["parse_address"]
