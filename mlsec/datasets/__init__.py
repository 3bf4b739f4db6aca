"""Datasets read in bounded chunks: static risks, poisoning signals without a model, drift against a reference."""
