"""Adapters: Lightning, Transformers, TensorBoard and zero-code instrumentation."""
