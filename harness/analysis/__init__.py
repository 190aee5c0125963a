"""Analysis of stored results: the training-vs-inference answer, MFU, comparisons between runs,
change points."""
