"""Runtime decisions: which device and dtype a model runs on (one place owns them)."""
