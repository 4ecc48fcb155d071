// Web Push on the demo page: registers the service worker (sw.js), offers "Push" when the
// server has it on (GET /api/push/vapid-public-key), subscribes this browser for the signed-in
// user (POST /api/push/subscriptions) and unsubscribes (DELETE). Pushes that arrive while a page
// is open are handed over by the service worker and shown like live notifications.
"use strict";

(function () {
  const SW_URL = "/static/sw.js";
  let ctx = null; // what app.js passes to mount(): api, toast, onNotification, setPill
  let registration = null;
  let publicKey = null;

  function keyBytes(base64url) {
    const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function show(state, text, title) {
    const button = document.getElementById("push-toggle");
    button.hidden = false;
    ctx.setPill("push-toggle", state, text);
    button.title = title || "";
  }

  async function current() {
    return registration ? registration.pushManager.getSubscription() : null;
  }

  async function enable() {
    show("connecting", "asking");
    const permission = await Notification.requestPermission();
    if (permission !== "granted") return show("offline", "blocked", "Notifications are blocked for this site in the browser's settings");
    try {
      const subscription = (await current()) || await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(publicKey),
      });
      await ctx.api("POST", "/api/push/subscriptions", subscription.toJSON());
      show("live", "on", "Notifications reach this browser while no tab is open");
      ctx.toast("Push notifications on", "You will be notified here while the page is closed.");
    } catch (err) {
      show("offline", "failed", err.message);
      ctx.toast("Push notifications unavailable", err.message || String(err), "error");
    }
  }

  async function disable() {
    const subscription = await current();
    if (subscription) {
      try {
        await ctx.api("DELETE", "/api/push/subscriptions", { endpoint: subscription.endpoint });
      } finally {
        await subscription.unsubscribe();
      }
    }
    show("idle", "off", "Get notifications while no tab is open");
  }

  async function toggle() {
    const button = document.getElementById("push-toggle");
    button.disabled = true;
    try {
      if (button.dataset.state === "live") await disable();
      else await enable();
    } catch (err) {
      ctx.toast("Push notifications", err.message || String(err), "error");
    } finally {
      button.disabled = false;
    }
  }

  async function mount(context) {
    ctx = context;
    if (!("serviceWorker" in navigator)) return; // not a secure context, or an old browser
    registration = await navigator.serviceWorker.register(SW_URL);
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data && event.data.type === "tiffin-push" && event.data.notification) {
        ctx.onNotification(event.data.notification);
      }
    });
    document.body.dataset.serviceWorker = "registered";
    if (!("PushManager" in window) || !("Notification" in window)) return;
    try {
      publicKey = (await ctx.api("GET", "/api/push/vapid-public-key")).publicKey;
    } catch (err) {
      return; // 404: push is off on this server (push.enabled); the button stays hidden
    }
    document.getElementById("push-toggle").addEventListener("click", toggle);
    const subscription = await current();
    if (subscription && Notification.permission === "granted") {
      // This browser is subscribed: register it for whoever is signed in now.
      await ctx.api("POST", "/api/push/subscriptions", subscription.toJSON()).catch(() => {});
      show("live", "on", "Notifications reach this browser while no tab is open");
    } else {
      show("idle", "off", "Get notifications while no tab is open");
    }
  }

  window.tiffinPush = { mount };
})();
