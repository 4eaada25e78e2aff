"""The editing layer: the edit engine, the user-facing knobs, files, manifests and batch editing."""
