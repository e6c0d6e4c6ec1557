"""The compiler: model.pt -> graph IR -> planned, int8 C."""
