"""EditMGT Studio core: the EditMGT masked generative transformer, its sampler and the editing engine (no UI code)."""
