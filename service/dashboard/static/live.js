// Live updates by server-sent events, with polling only as the fallback. The browser's
// EventSource sends the session cookie and, after a dropped connection, reconnects by
// itself with Last-Event-ID, so nothing is sent twice. When the stream is refused (404,
// 503: too many open streams), keeps failing without delivering anything (a proxy that
// buffers or cuts it), or EventSource does not exist, `fallback` starts polling instead.
// <body data-live> says which is in use: "stream", "poll", or "" once nothing changes.
import { showError } from "/ui/static/api.js";

// stream errors in a row, with no event received between them, before polling instead
const FAILURES = 3;

export function follow(url, handlers, fallback) {
  let source = null;
  let fellBack = false;
  const fallBack = (why) => {
    if (fellBack) return;
    fellBack = true;
    source?.close();
    document.body.dataset.live = "poll";
    document.body.dataset.liveWhy = why;
    fallback();
  };
  if (typeof EventSource !== "function") {
    fallBack("this browser has no EventSource");
    return;
  }
  source = new EventSource(url);
  let failures = 0;
  for (const [kind, handle] of Object.entries(handlers)) {
    source.addEventListener(kind, async (event) => {
      failures = 0;
      document.body.dataset.live = "stream";
      if (kind === "end") {
        source.close();
        document.body.dataset.live = "";
      }
      try {
        await handle(JSON.parse(event.data));
      } catch (err) {
        showError(err);
      }
    });
  }
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) fallBack("the stream was refused");
    else if (++failures >= FAILURES) fallBack("the stream keeps failing");
  });
}

// The page's "live" badge: how it is kept up to date, or nothing once it ended.
export function liveBadge(terminal) {
  const badge = document.getElementById("live");
  if (!badge) return;
  const mode = document.body.dataset.live;
  badge.hidden = terminal || !mode;
  badge.textContent = mode === "poll" ? "live (polling every 2 s)" : "live";
  badge.title = mode === "poll" ? document.body.dataset.liveWhy || "" : "server-sent events";
}
