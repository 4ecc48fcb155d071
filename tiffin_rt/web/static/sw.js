// tiffin_rt service worker: shows the notifications the server pushes (Web Push) while no page
// of this site is open, and hands them to any open page (which lists and toasts them).
// A push's data is the `notification` payload: {id, type, title, body, data, createdAt, eventId}.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function readPush(data) {
  if (!data) return {};
  try {
    const value = data.json();
    return value && typeof value === "object" ? value : {};
  } catch (err) {
    return { title: data.text() };
  }
}

self.addEventListener("push", (event) => {
  const n = readPush(event.data);
  const title = typeof n.title === "string" && n.title ? n.title : "tiffin_rt";
  const body = typeof n.body === "string" ? n.body : "";
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const page of pages) page.postMessage({ type: "tiffin-push", notification: n });
    // Shown as plain text by the browser (a notification's title and body are never HTML).
    await self.registration.showNotification(title, {
      body,
      tag: n.id !== undefined ? `tiffin-${n.id}` : undefined,
      icon: "/static/favicon.svg",
      data: { id: n.id ?? null },
    });
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const page of pages) {
      if (new URL(page.url).origin === self.location.origin && "focus" in page) return page.focus();
    }
    return self.clients.openWindow("/");
  })());
});
