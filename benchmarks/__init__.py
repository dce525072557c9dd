"""Benchmarks at the scale of a clinic network: ``python -m benchmarks [--quick]``.

Not part of the test run (a smoke test runs them at a tiny scale so they never
rot). See README, "Benchmarks", for what is measured and the targets.
"""

REDIS_SERVER = "/usr/bin/redis-server"  # Debian's package: the network's broker and shared cache
