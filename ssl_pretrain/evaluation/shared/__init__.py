"""What both wings use: the classifier around an encoder, predictions, splits, the selection rule,
reports, finding the encoder to evaluate."""
