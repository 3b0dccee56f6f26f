"""One module per tab; each exposes build(ctx) and keeps no module-level state."""
