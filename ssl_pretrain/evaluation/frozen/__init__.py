"""The frozen-feature wing: the linear probe, kNN and the label-free ranking, three commands on the features
floor (:mod:`ssl_pretrain.evaluation.features`)."""
