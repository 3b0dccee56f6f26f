"""Training LoRA adapters: a folder of pictures (or short clips for a video model) in, an adapter the LoRA picker
loads out.

`dataset` checks a folder (captions, trigger word, aspect buckets), `options` holds a run's settings,
`targets` knows how each trainable model part computes its loss, `loop` runs the steps with checkpoints and
resume, and `runs` queues a run in the engine (it takes the device; generation waits) for the CLI, the
API and the Training tab. Nothing here imports Gradio.
"""
