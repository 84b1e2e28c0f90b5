"""Benchmarks: each prints a table and writes bench/results/<name>.json."""

import warnings

# The project relies on BackfillPolicy knowingly; the beta notice is noise in a results table.
warnings.filterwarnings("ignore", message=r".*is currently in beta")
