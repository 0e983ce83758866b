"""Video datasets (datasets.py) and the time-reversal benchmark generator (synthetic.py)."""
