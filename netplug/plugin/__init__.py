"""CNI plugins: `netplug` (bridge + NAT) and `netplug-ipam`. Orchestration only."""
