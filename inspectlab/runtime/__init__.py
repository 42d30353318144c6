"""Real execution: latency, feature capture, empirical receptive fields, peer libraries."""
