"""nsdash.monitor."""
