"""Exporters from a trained torch model to a verified bundle (.pte, .mlpackage, .tflite, .onnx): the converters issue."""
