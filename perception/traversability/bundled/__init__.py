"""The bundled traversability segmenter, so the node sees beyond stereo range out of the box.

``trav.pt`` was trained with ``rover train traversability --sim forest open corridor
--sim-seeds 11 12 13 14 --epochs 8`` (stereo self-labels only); ``eval.json`` is its
``rover eval traversability`` report on sim/scenarios/regression.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL = BUNDLED_DIR / "trav.pt"
BUNDLED_REPORT = BUNDLED_DIR / "eval.json"


def bundled_model_path() -> Path | None:
    """The bundled checkpoint, or None in a checkout that does not carry it."""
    return BUNDLED_MODEL if BUNDLED_MODEL.is_file() else None
