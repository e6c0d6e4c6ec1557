"""The int8 spec: integer semantics (spec, ops), post-training quantization and the reference interpreter."""
