"""The report: building its sections from the answer, figures, HTML/Markdown rendering, and history
plots."""
