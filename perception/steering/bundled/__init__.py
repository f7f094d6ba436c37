"""The bundled steering model: made by the user's path (`make model`: 20 minutes recorded with
`rover drive --perturb`, `rover train steering`, `rover eval`; see docs/steering.md), shipped
with rover so that `rover demo` drives with a CNN out of the box.

``steering.pt`` is the checkpoint; ``eval.json`` is its `rover eval` report on the regression
suite, the baseline CI compares new models with.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL = BUNDLED_DIR / "steering.pt"
BUNDLED_REPORT = BUNDLED_DIR / "eval.json"


def bundled_model_path() -> Path | None:
    """The bundled checkpoint, or None in a checkout where it was not trained yet."""
    return BUNDLED_MODEL if BUNDLED_MODEL.is_file() else None
