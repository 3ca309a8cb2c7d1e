"""Modal screens: help, stage switcher, sampling settings."""
