"""Pretraining loop, checkpoints, export."""
