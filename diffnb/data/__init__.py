"""Data sets: linear manifolds generated on the fly, and image data sets."""

from diffnb.data.linear import AxisAlignedManifold, LinearManifold

__all__ = ["AxisAlignedManifold", "LinearManifold"]
