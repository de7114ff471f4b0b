"""Evaluation of pretrained encoders, in wings: ``frozen`` (probes, kNN on features extracted once),
``finetuning`` (encoder + head trained, semi-supervised methods), ``extras`` (ensembles, Grad-CAM), and
``shared`` (what they all use)."""
