"""Chat sessions shared by the TUI (and the server's trimming): history, context fitting, multi-agent."""
