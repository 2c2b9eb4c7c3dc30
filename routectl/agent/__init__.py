"""routectl.agent."""
