"""Reading the agent's per-measurement results on the host (light: the report imports it without torch).

Raspberry Pi's `vcgencmd get_throttled` answers `throttled=0x50005`: bits 0-3 say what holds now, bits 16-19 what
has happened since boot. The since-boot bits stay set until a reboot, so they spoil a round only if they changed
while it ran; otherwise they are the board's history, worth stating once and no reason to discard a measurement.
The agent also samples the throttle bits while timing (`clocks.throttled`, about once a second), so a throttle that
starts and ends inside a measurement spoils it too, as does a clock that changed while timing (`clocks.changed`: the
CPU or a GPU's frequency, a governor) or a governor that differs before and after it.
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


def _masks(result: dict) -> list[int]:
    """Every throttle mask read for a measurement: before it, while timing, after it."""
    before, after = (throttle_mask(result.get(key)) for key in ("environment_before", "environment_after"))
    sampled = list((result.get("clocks") or {}).get("throttled") or [])
    return [mask for mask in (before, *sampled, after) if mask is not None]


def throttle_reason(result: dict) -> str | None:
    """Why the measurement is spoilt by throttling, or None: a current bit set in any reading, or a since-boot
    bit that changed between readings."""
    masks = _masks(result)
    now = sorted({name for mask in masks for name in _names(mask & 0xF)}, key=CONDITIONS.index)
    if now:
        return f"throttled ({', '.join(now)} while measuring)"
    if len(masks) >= 2:
        anywhere = everywhere = masks[0]
        for mask in masks[1:]:
            anywhere, everywhere = anywhere | mask, everywhere & mask
        changed = (anywhere ^ everywhere) >> SINCE_BOOT_SHIFT & 0xF
        if changed:
            return f"throttled ({', '.join(_names(changed))} since boot changed during the measurement)"
    return None


def throttled(result: dict) -> bool:
    return throttle_reason(result) is not None


def clock_reason(result: dict) -> str | None:
    """Why the measurement is spoilt by its clocks, or None: what the agent saw change while timing, and a governor
    that differs before and after the measurement."""
    changed = list((result.get("clocks") or {}).get("changed") or [])
    governors = [(result.get(key) or {}).get("governor") for key in ("environment_before", "environment_after")]
    if None not in governors and governors[0] != governors[1] and not any(c.startswith("governor") for c in changed):
        changed.append(f"governor {governors[0]} -> {governors[1]}")
    return f"clocks changed while measuring ({'; '.join(changed)})" if changed else None


def spoil_reason(result: dict) -> str | None:
    """Why a measurement does not count (throttling, changed clocks), or None: the report leaves it out."""
    reasons = [reason for reason in (throttle_reason(result), clock_reason(result)) if reason]
    return "; ".join(reasons) or None


def since_boot(result: dict) -> list[str]:
    """What the board reports as having happened since boot (before the measurement): context, not a flag."""
    mask = throttle_mask(result.get("environment_before"))
    return _names(mask >> SINCE_BOOT_SHIFT & 0xF) if mask is not None else []
