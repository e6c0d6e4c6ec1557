"""Memory-constrained one-shot NAS: a weight-sharing supernet (supernet, train), the fitting sampler and the
compiler's exact SRAM/flash cost (sampler, cost), evolution and random search (evolution), the finish (finish) and
`mcuformer search` (run). docs/search.md describes it."""
