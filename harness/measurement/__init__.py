"""Measurement: the timing loop, the machine's environment, and
`bench doctor`."""
