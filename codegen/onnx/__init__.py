"""ONNX in and out. In: the front end (`frontend.py`: ViT-style ONNX models -> mcuformer's VisionTransformer -> the
usual int8 compile path). Out: `export.py` (the fp32 model) and `qdq.py` (the int8 model as a QDQ graph)."""
