"""Isolation: the worker process executor. It runs any job function it is handed and knows no job
type."""
