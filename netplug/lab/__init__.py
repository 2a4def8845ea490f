"""Classroom labs in network namespaces (scapy is imported only here)."""
