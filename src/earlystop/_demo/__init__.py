"""The demo application: data, IDX reader, training, figure and report."""
