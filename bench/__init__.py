"""consultd-bench: the load harness of consultd (the command line is /work/shared/BENCH.md)."""
