"""TUI widgets: they receive what they show (and the session/engine) from the app and report upward with Messages."""
