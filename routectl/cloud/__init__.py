"""routectl.cloud."""
