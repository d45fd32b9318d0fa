"""`tally`: Tally for people at a terminal (configuration, points, import, export, watch)."""
