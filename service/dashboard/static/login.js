import { api, showError } from "/ui/static/api.js";

// Only same-site paths under /ui are followed after signing in (no open redirect).
function next() {
  const target = new URLSearchParams(location.search).get("next") || "/ui/jobs";
  return target.startsWith("/ui/") && !target.startsWith("//") ? target : "/ui/jobs";
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("/ui/session", { method: "POST", body: { token: document.getElementById("token").value } });
    location.assign(next());
  } catch (err) {
    showError(err);
  }
});
