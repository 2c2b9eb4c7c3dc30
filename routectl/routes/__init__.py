"""routectl.routes."""
