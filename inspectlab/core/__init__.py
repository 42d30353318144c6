"""What every layer shares, torch-free: shapes, names, files, errors, argument parsing."""
