"""Helpers shared by the tests and the benchmarks (``benchmarks/`` put the repository root on
``sys.path`` to import them); none of this ships in the wheel."""
