"""diffnb: the package behind *The geometry of generative diffusion*."""

__version__ = "0.1.0"
