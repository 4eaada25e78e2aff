"""EditMGT Studio core: the EditMGT masked generative transformer, its sampler and the editing engine (no UI code)."""

__version__ = "0.2.0"
