"""routectl: per-node pod CIDRs, cloud VPC routes and egress masquerade for Kubernetes route mode."""

__version__ = "0.1.0"
