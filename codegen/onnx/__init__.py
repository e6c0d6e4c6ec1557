"""The ONNX front end: ViT-style ONNX models -> mcuformer's VisionTransformer -> the usual int8 compile path."""
