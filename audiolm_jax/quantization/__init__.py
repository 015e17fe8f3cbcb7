"""Quantizers: residual vector quantisation and k-means."""
