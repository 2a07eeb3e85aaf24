"""Networks for linear diffusion: Flexi-UNet, a plain UNet and the Dual-FNO UNet.

``models`` imports only torch; a network never knows the diffusion process.
Every network maps ``(x_t, t)`` (and, for :class:`FlexiUNet`, an output size)
to a prediction.
"""

from ._dfu import DualFNOUNet
from ._flexi_unet import FlexiUNet
from ._flops import count_flops, count_parameters
from ._spectral_conv import DualConv2d, SpectralConv2d, kept_modes
from ._unet import UNet

__all__ = [
    "DualConv2d",
    "DualFNOUNet",
    "FlexiUNet",
    "SpectralConv2d",
    "UNet",
    "count_flops",
    "count_parameters",
    "kept_modes",
]
