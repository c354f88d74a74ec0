"""Demo and test OS trees that nsdash builds itself and caches."""
