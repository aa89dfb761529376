"""What is measured: statistics against naive references, the module taxonomy, the NaN replay."""
