"""The backend conformance kit: checks that any registered backend keeps the Backend contract.

It ships inside the package (not under tests/) so that an installed `bench check-backend NAME`
can prove a vendor plugin behaves. Checks are plain functions; pytest is not needed.
"""

from harness.conformance.kit import run_kit
from harness.conformance.outcome import CheckResult, KitReport

__all__ = ["CheckResult", "KitReport", "run_kit"]
