"""What only the demo (train/demo.py) uses: its decoder budget by precision (budget), its clock and time
estimates (clock), and its record of a run, metrics.json and the results table (results)."""
