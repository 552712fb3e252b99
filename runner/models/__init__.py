"""Base models: resolving a job's ``model.base`` to a local directory, and the built-in test models."""
