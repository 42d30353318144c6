"""The zoo: networks written for inspectlab, and the registry that names them."""
