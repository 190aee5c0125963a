"""accelbench-hostdev: an example vendor plugin. `bench` finds it through the entry point
`hostdev = "accelbench_hostdev:HostDevBackend"` in the group `bench.backends`."""

from accelbench_hostdev.backend import HostDevBackend

__version__ = "0.1.0"
__all__ = ["HostDevBackend", "__version__"]
