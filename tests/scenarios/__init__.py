"""Built-in scenarios reproduce their sources."""
