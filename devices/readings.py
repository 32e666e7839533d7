"""Reading the agent's per-measurement results on the host (light: the report imports it without torch)."""

from __future__ import annotations


def throttled(result: dict) -> bool:
    """vcgencmd's get_throttled (Raspberry Pi) reports a non-zero bit mask while or since the board throttled."""
    text = (result.get("environment_after") or {}).get("throttled") or ""
    return "=" in text and text.split("=")[-1].strip() not in ("0x0", "0")
