"""Small library utilities that import nothing heavy: `logging` (the vcq_hf logger and its verbosity)."""
