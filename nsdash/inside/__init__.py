"""nsdash.inside."""
