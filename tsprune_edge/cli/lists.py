"""The one reading of a comma-separated option, for every command (torch-free)."""

from __future__ import annotations


def comma_list(text: str) -> tuple[str, ...]:
    """'onnx, tflite' -> ('onnx', 'tflite'), order kept, duplicates dropped."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
