"""The frozen-feature wing: linear probes (one layer, every layer, several views) and kNN on features extracted once."""
