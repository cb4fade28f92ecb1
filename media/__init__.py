"""The WebRTC SFU of consult rooms: forwards RTP between participants, never transcodes.

Vocabulary (mediasoup's): a ``Router`` per room; per participant one ``Transport`` (a peer
connection with the server); a ``Producer`` per track a participant sends; a ``Consumer``
per track a participant receives.
"""
