"""Tool models the engine runs as jobs beside the generation models: depth maps for ControlNet
(`depth`), captions and image-to-prompt (`caption`), prompt expansion (`enhance`). Each is loaded through a
transformers pipeline from a Hugging Face id, a local folder or a tiny id built in code (`weights`), and
runs in the engine's queue (`jobs`), so it never shares the device with a generation."""
