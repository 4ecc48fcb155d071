"""Transports turn a request into a client: Socket.IO namespaces and the SSE stream."""
