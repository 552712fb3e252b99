"""Training data: reading rows (local files or the hub) and turning them into conversations."""
