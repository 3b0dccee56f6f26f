"""Kubin: a local web UI, CLI and engine for the Kandinsky family of generative models."""

__version__ = "0.1.0"

from kubin.library_warnings import quiet_known_library_warnings

quiet_known_library_warnings()
