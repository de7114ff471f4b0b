"""The parts tasks are built from: views and multi-crop, heads, losses, patches, the momentum teacher, the
decoder, corruptions, colour ops, the joint-embedding base and previews. None of them is a registered task."""
