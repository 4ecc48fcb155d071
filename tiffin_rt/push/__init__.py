"""Web Push: subscriptions, VAPID keys, and pushing notifications to users who are not connected."""
