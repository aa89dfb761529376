"""Every remedy family, the registry's shared suite and end-to-end proofs."""
