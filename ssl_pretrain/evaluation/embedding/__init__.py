"""Putting an encoder to work without labels: embed a collection into a memory-mapped file, show it in
TensorBoard's projector, find each image's nearest neighbours and the near-duplicates of a collection."""
