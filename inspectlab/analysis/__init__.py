"""Pure functions from a model or a Trace to tables: params, FLOPs, shapes, receptive fields, memory."""
