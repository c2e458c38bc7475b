"""``hokusai.core``: the import path existing code uses (``from hokusai.core import
ModelRegistry``). The same objects as ``hokusai``."""

from hokusai.sdk.registry import ModelRegistry

__all__ = ["ModelRegistry"]
