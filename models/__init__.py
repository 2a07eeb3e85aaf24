"""Networks for linear diffusion: Flexi-UNet, a plain UNet and the Dual-FNO UNet.

``models`` imports only torch; a network never knows the diffusion process.
"""

__all__: list[str] = []
