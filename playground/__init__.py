"""Sampling Playground: see how language models sample, token by token."""

__version__ = "0.1.0"
