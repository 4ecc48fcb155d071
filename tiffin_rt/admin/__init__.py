"""The admin view: GET /admin (a page) and GET /admin/state (what it shows), admin role only."""
