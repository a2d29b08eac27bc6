"""Python client of the paints-undo job service."""
