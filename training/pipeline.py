"""``python -m training.pipeline``: the main job's earlier name, kept as an alias of :mod:`edgevideo.pipeline`.

Only the command is aliased, not the module: importing ``training.pipeline`` imports nothing above ``training``
(dependencies point one way, ``sdk <- training <- converters <- edgevideo``).
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("edgevideo.pipeline", run_name="__main__", alter_sys=True)
