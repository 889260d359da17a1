"""`python -m launch_bench` runs the benchmark (bench/run is the entry point that prepares everything)."""

import sys

from launch_bench.cli import main

sys.exit(main())
