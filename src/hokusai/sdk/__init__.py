"""The Hokusai SDK: ``ModelRegistry`` and its errors."""
