"""The train package."""
