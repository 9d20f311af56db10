"""Live calls between the command room and a unit's phone: the server-side WebRTC media (aiortc, PyAV).

mixer: the conference audio (each participant hears the others); video: the phone's camera as one track that
survives reconnects; recorder: the call's audio and video into one MP4; room: one call's peer connections.
"""
