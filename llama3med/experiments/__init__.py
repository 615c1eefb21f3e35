"""End-to-end jobs built from the other packages: the demo and the probe experiments."""
