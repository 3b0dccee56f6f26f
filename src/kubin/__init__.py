"""Kubin: a local web UI, CLI and engine for the Kandinsky family of generative models."""

__version__ = "0.1.0"
