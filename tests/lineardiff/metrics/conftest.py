"""Fixtures of the metrics tests."""

import pytest
from feature_inputs import save_script, tiny_net


@pytest.fixture
def tiny_file(tmp_path):
    """:func:`feature_inputs.tiny_net` saved as TorchScript, as the real network is shipped."""
    return save_script(tiny_net(), tmp_path / "tiny.pt")
