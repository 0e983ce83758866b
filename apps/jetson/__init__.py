"""Jetson / Linux live app: ``python -m apps.jetson --help``."""
