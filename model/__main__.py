import sys

from model.cli import run

sys.exit(run())
