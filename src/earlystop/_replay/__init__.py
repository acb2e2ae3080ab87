"""Tools on recorded learning curves: the curves format, replay and tune (no argparse)."""
