"""Results: what is stored (the schema and the run configuration inside it), the store, pandas
frames and exports."""
