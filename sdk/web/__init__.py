"""The browser runtime: an ES module (edgevideo.js), its page and `python -m sdk web` (serve.py)."""
