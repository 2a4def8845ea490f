"""Thin netlink edge (pyroute2). Tested for real in throwaway namespaces, never mocked."""
