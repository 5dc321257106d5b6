"""Models: loading (plus artifact loaders methods register), tiny presets, layer lookup, MoE helpers."""
