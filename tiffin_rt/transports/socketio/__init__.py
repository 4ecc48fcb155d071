"""Socket.IO: one module per namespace."""
