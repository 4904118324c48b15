"""A model's memory: read from its GGUF header, estimated, measured, and placed on devices."""
