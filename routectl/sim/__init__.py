"""routectl.sim."""
