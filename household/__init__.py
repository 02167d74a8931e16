"""The household's own tools: a member's keys, made and kept on the member's device, and the signed member list.

Neither the hub nor the register can change who clips are encrypted to; only a member, with this package (the
``kotihub member`` commands; the web app mirrors it), can sign a new version of the list.
"""
