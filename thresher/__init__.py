"""Thresher: audit, decontaminate, curate, mix, synthesize and train on post-training data."""

__version__ = "0.1.0"
