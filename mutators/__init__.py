"""mutators package."""
