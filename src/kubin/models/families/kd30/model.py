"""Loading and running Kandinsky 3.0: the Kandinsky 3 architecture's code, which 3.1 shares."""

from kubin.models.kandinsky3 import Kandinsky30, find_weights, load, steps_per_batch

__all__ = ["Kandinsky30", "find_weights", "load", "steps_per_batch"]
