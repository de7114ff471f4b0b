"""Shared helpers every layer above may use: file writing and safe loading, RNG state, optimizers and the
learning-rate schedule, numeric precision and memory layout."""
