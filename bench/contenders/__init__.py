"""One module per contender; each runs as its own process (`python -m bench.contenders.<name>`)
and prints one JSON line `{"work_s": ..., "phases": {...}}` as its last line of output."""
