"""nsdash.tui.widgets."""
