"""nsdash.launcher."""
