"""Work in progress (issue 3)."""
import argparse


def add_cli(parser: argparse.ArgumentParser) -> None:
    def run(args: argparse.Namespace) -> int:
        raise NotImplementedError("msvssm.data.splits is being written (issue 3)")

    parser.set_defaults(func=run)
