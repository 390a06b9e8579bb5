"""The device suite (pytest): parity of seeded programs on a target and the step microbenchmarks.

    pytest device_tests/suite --target qemu-arm64        # parity (make test runs this)
    pytest --benchmark-only device_tests/suite/bench_step.py   # make bench
"""
