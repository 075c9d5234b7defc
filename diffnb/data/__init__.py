"""Data sets: linear manifolds generated on the fly, and image data sets."""

from diffnb.data.images import load_images, load_subset
from diffnb.data.linear import AxisAlignedManifold, LinearManifold

__all__ = ["AxisAlignedManifold", "LinearManifold", "load_images", "load_subset"]
