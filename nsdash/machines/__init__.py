"""nsdash.machines."""
