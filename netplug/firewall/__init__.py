"""Firewall: pure rule model and plans, thin backends (nftables, iptables-nft, iptables-legacy)."""
