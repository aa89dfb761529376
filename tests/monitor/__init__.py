"""The Monitor: statistics, lifecycle, mixed precision and distributed reduction."""
