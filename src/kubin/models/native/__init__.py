"""Our own implementations of the Kandinsky models diffusers does not ship (2.0, 3.1, 4.0), checkpoint-compatible."""
