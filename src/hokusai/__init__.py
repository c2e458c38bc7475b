"""Hokusai: a self-hostable model registry platform in front of MLflow."""

__version__ = "0.1.0"
