"""The engine: increment resolution, the materialize loop, and filters compiled to expressions."""
