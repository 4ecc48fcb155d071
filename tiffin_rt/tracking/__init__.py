"""Rider location tracking: riders' positions in, each order's watchers told, latest wins."""
