"""The model files shipped inside the package: each loads, records its training, and runs."""

import pytest
import torch

from lineardiff.app.config import shipped_configs
from lineardiff.pretrained import load_model, shipped_models

SHIPPED = sorted(shipped_models())


def test_the_issue_s_models_are_shipped():
    assert {"ising16-ssd", "ising32-ssd", "ising32-ddpm", "ising32-skild", "ising-dfu"} <= set(
        SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_records_its_training_and_denoises_finitely(name):
    path = shipped_models()[name]
    assert path.stat().st_size < 8e6  # "a few MB each"
    m = load_model(name)
    assert name in shipped_configs()  # its config ships too, so the training can be re-run
    assert m.step > 0 and m.meta["train_seconds"] > 0
    assert m.meta["command"].startswith("lineardiff train --config")
    assert m.config["data"]["name"] == "ising"
    # one denoising call at the training size: right shape, finite (catches a file whose
    # weights do not fit the recorded architecture or hold NaNs)
    x = torch.randn(2, *m.process.shape_at(1), generator=torch.Generator().manual_seed(0))
    t = torch.ones(2, dtype=torch.long)
    with torch.no_grad():
        out = m.denoiser(x, t, m.process.shape_at(0))
    assert out.shape == (2, *m.process.shape_at(0)) and bool(torch.isfinite(out).all())
