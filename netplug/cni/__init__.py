"""The CNI contract: env and config parsing, results, version conversion, dispatch."""
