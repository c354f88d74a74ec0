"""nsdash.tui.console."""
