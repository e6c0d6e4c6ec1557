"""Memory-constrained one-shot NAS (supernet, evolutionary search). Not built yet: see the search issue."""
