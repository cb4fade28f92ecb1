"""The WebRTC SFU of consult rooms: forwards RTP between participants, never transcodes.

Vocabulary (mediasoup's): a ``Router`` per room; per participant one ``Transport`` (a peer
connection with the server); a ``Producer`` per track a participant sends; a ``Consumer``
per track a participant receives.

Signalling: the client always offers, the server answers (``Transport.apply_offer``); when a
participant must receive a new track the transport asks for a new offer through its
``on_negotiation_needed`` callback (``NegotiationRequest``). ``set_ice_host_addresses`` fixes
the addresses ICE gathers on, ``set_ice_port_range`` the UDP ports (both process-wide).
"""

from ._aiortc_bridge import set_ice_host_addresses as set_ice_host_addresses
from ._aiortc_bridge import set_ice_port_range as set_ice_port_range
from .consumer import Consumer as Consumer
from .errors import InvalidStateError as InvalidStateError
from .errors import MediaError as MediaError
from .errors import NegotiationError as NegotiationError
from .errors import PublishNotAllowedError as PublishNotAllowedError
from .producer import Producer as Producer
from .router import Router as Router
from .transport import NegotiationRequest as NegotiationRequest
from .transport import Transport as Transport
