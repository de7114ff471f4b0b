"""The fine-tuning wing: encoder + head trained on the labels; freezing, the auto freeze point, the head's
start, learning from the unlabeled images too."""
