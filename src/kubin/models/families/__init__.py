"""One package per model family: everything Kubin knows about it (specs, capabilities, loading code, tiny
builder). The registry discovers them; see docs/architecture.md for how to add one."""
