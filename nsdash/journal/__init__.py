"""nsdash.journal."""
