"""routectl.controller."""
