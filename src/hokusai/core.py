"""``hokusai.core``: the import path existing code uses (``from hokusai.core import
ModelRegistry``). The same objects as ``hokusai``."""

# Everything ``hokusai`` exports and nothing else: a list of its own here would be a
# second list to keep in step.
from hokusai import *  # noqa: F403
from hokusai import __all__ as __all__
