"""tsprune_edge.devices: device profiles, transports (local, SSH) and the board agent.

Installed as `tsprune_edge.devices` (setuptools maps this folder); never imported as a bare `devices`.
"""
