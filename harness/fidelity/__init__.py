"""Training fidelity, the torch side: the training runs (trajectory), the check and its
isolation jobs (jobs), and the drift survey (drift). The bands are data in
harness.results.fidelity; the judge is pure, in harness.results.fidelity_judge."""
