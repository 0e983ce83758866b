"""The main job, above the libraries it drives: ``sdk <- training <- converters <- edgevideo``.

``python -m edgevideo.pipeline`` (alias: ``python -m training.pipeline``) generates the benchmark, trains, distils,
quantizes, evaluates, exports and streams; nothing below this package imports it.
"""
