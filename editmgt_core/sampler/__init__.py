"""The sampler layer: the schedule, attention consolidation, region hold and the MaskGIT samplers."""
