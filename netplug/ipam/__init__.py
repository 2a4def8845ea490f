"""IPAM: a pure allocator over a host-local compatible on-disk store."""
