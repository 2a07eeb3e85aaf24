"""Trained models: load a model file or a shipped model, export a run's EMA weights.

The public home of :mod:`lineardiff.app.pretrained` (where the code lives, beside the shipped
files in ``lineardiff/app/weights``)::

    from lineardiff.pretrained import load_model
    model = load_model("ising32-ssd")
"""

from .app.pretrained import TrainedModel, export_model, load_model, shipped_models

__all__ = ["TrainedModel", "export_model", "load_model", "shipped_models"]
