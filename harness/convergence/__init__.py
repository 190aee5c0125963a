"""Train to a target (`bench run --mode converge`): seeds trained on the device and on the
reference, the target and band derived from the reference, stability events. docs/convergence.md."""
