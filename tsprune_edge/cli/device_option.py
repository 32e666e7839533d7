"""`--device` and `--round-to` of `prune` and `export`: prune for a board's channel alignment.

The CLI resolves the board's profile here and hands prune and export a plain int and where it came from: they sit
below devices in the import layering and never import it (fit and sweep, which measure on boards, sit above it;
tests/test_import_graph.py).
"""

from __future__ import annotations


def resolve_round_to(device: str | None, round_to: int | None) -> tuple[int, str]:
    """(round_to, source): --round-to ("option"), else the --device profile's ("profile NAME"), else the default.
    An unknown device is refused here, before any work."""
    from tsprune_edge.prune.stage import DEFAULT_ROUND_TO

    profile = None
    if device is not None:
        from tsprune_edge.devices.profiles import load_profile

        profile = load_profile(device)
    if round_to is not None:
        return round_to, "option"
    if profile is not None:
        return profile.round_to, f"profile {profile.name}"
    return DEFAULT_ROUND_TO, "default"
