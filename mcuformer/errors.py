class McuformerError(Exception):
    """Base of errors shown to users as one line."""


class BudgetError(McuformerError):
    """A model that does not fit a board's SRAM or flash, or a budget that cannot be read or met."""
