"""nsdash.tui.screens."""
