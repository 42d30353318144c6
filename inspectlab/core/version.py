"""inspectlab's version (one home: the package, reports and manifests read it here)."""

__version__ = "0.1.0"
