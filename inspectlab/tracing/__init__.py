"""The recorder (hooks + dispatch mode) and the Trace data classes."""
