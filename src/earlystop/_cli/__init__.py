"""The ``earlystop`` command line: thin argparse front ends over the library and the demo."""
