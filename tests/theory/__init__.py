"""Closed forms and spectra against autograd."""
