"""routectl.ipam."""
