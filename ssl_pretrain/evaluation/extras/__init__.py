"""Beyond one encoder's score: ensembles of fine-tuned models, Grad-CAM."""
