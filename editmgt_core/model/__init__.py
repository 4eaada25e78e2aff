"""The model layer: the EditMGT transformer, its configuration, map entries, checkpoints, encoders and loading."""
