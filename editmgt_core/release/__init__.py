"""The release package."""
