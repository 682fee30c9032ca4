"""CLI subcommands: each module has HELP, add_arguments(parser) and run(args) -> int.

Keep module-level imports light (no torch/transformers): they are imported on every CLI start.
"""
