"""A sample's history: the ring of the last minutes, the store on disk, and
their column and CSV forms."""
