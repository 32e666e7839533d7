"""Reading the agent's per-measurement results on the host (light: the report imports it without torch).

Raspberry Pi's `vcgencmd get_throttled` answers `throttled=0x50005`: bits 0-3 say what holds now, bits 16-19 what
has happened since boot. The since-boot bits stay set until a reboot, so they spoil a round only if they changed
while it ran; otherwise they are the board's history, worth stating once and no reason to discard a measurement.
"""

from __future__ import annotations

import re

CONDITIONS = ("under-voltage", "arm frequency capped", "throttled", "soft temperature limit")  # bits 0-3
SINCE_BOOT_SHIFT = 16
_MASK = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")


def throttle_mask(environment: dict | None) -> int | None:
    """The bit mask in an environment's `throttled` reading; None where the board has no vcgencmd."""
    found = _MASK.search((environment or {}).get("throttled") or "")
    return int(found.group(1), 0) if found else None


def _names(bits: int) -> list[str]:
    return [name for i, name in enumerate(CONDITIONS) if bits >> i & 1]


def throttle_reason(result: dict) -> str | None:
    """Why the measurement is spoilt by throttling, or None: a current bit set before or after it, or a since-boot
    bit that changed during it."""
    before, after = (throttle_mask(result.get(key)) for key in ("environment_before", "environment_after"))
    now = sorted({name for mask in (before, after) if mask is not None for name in _names(mask & 0xF)},
                 key=CONDITIONS.index)
    if now:
        return f"throttled ({', '.join(now)} while measuring)"
    if before is not None and after is not None:
        changed = (after ^ before) >> SINCE_BOOT_SHIFT & 0xF
        if changed:
            return f"throttled ({', '.join(_names(changed))} since boot changed during the measurement)"
    return None


def throttled(result: dict) -> bool:
    return throttle_reason(result) is not None


def since_boot(result: dict) -> list[str]:
    """What the board reports as having happened since boot (before the measurement): context, not a flag."""
    mask = throttle_mask(result.get("environment_before"))
    return _names(mask >> SINCE_BOOT_SHIFT & 0xF) if mask is not None else []
