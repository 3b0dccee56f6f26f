"""The Gradio web UI: a thin client of the engine."""
