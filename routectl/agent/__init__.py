"""Node agent: egress masquerade rules (render, apply atomically, keep in sync) for `routectl agent`."""
