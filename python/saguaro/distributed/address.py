"""Where a draft-server listens: ``tcp://HOST:PORT``."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT`` (an IPv4 address or a name; port 0 = any free port when
    listening). ValueError saying the expected form otherwise."""
    if not isinstance(address, str) or not address.startswith("tcp://"):
        raise ValueError(f"a draft address is tcp://HOST:PORT (for example tcp://127.0.0.1:7600), got {address!r}")
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"a draft address is tcp://HOST:PORT (for example tcp://127.0.0.1:7600), got {address!r}")
    return parts.hostname, port


def is_draft_address(spec: object) -> bool:
    """Whether a draft argument names a draft-server rather than a model."""
    return isinstance(spec, str) and spec.startswith("tcp://")


def local_address_towards(host: str, port: int) -> str:
    """This host's address on the route to host:port (a UDP connect sends nothing): what the peer
    must use to reach this end's gloo device."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((socket.gethostbyname(host), port or 9))
        return s.getsockname()[0]
