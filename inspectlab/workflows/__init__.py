"""The only layer that combines tracing, analysis, runtime and render: one module per public capability."""
