"""The features floor every evaluation wing stands on: features extracted once from a frozen encoder
(`features`), what they are read from (`layer_view`: a layer, pooled; `feature_view`: the output, or raw
pixels; `views`: the views a probe compares), the logistic regression fitted on them (`logistic`) and the
frozen-method wrapper that chooses among settings on validation (`method`)."""
