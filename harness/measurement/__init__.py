"""Measurement: the timing loop, pure statistics over samples, the machine's environment, and
`bench doctor`."""
