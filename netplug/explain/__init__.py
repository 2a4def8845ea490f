"""netplug explain: parse → analyze → render, all pure; the CLI only gathers input."""
