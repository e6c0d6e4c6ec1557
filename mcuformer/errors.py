class McuformerError(Exception):
    """Base of errors shown to users as one line."""
