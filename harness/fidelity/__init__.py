"""Training fidelity: the check (target vs reference training), its tolerance bands, and the drift
survey."""
