"""Experiment-script smoke runs use `tiny_model_dir` from tests/conftest.py."""
