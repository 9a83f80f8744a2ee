"""On-demand benchmark of the index analysis against an I/O floor and peer scripts.

Run `python -m bench.run --sizes 2048,8192,16384` (see bench/README.md). Not collected by pytest.
"""
