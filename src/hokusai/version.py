"""The version of the hokusai-ml-platform distribution."""

__version__ = "0.1.0"
