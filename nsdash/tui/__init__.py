"""nsdash.tui."""
