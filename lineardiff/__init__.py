"""The generalized linear diffusion family ``x_t = A_t x_0 + noise``.

DDPM, VE, Blurring Diffusion, Scale Space Diffusion and SKILD as operator
choices of one process (built on :mod:`linops`). Work in progress: see the
project's issues.
"""

__all__: list[str] = []

__version__ = "0.1.0"
