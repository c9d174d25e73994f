"""Recommender models, one module each, sharing the protocol and file format of `base` (registry: `registry`)."""
