"""The studio layer: the streamed edit and sweep, input checks, rendering, domain notices and Space deployment."""
