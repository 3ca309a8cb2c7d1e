"""construct stage."""
