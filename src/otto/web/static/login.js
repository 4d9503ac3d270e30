// Otto's login page: exchanges the token for a session cookie (HttpOnly: no script can read
// it back) with a JSON POST, then goes back to the page that asked. Without JavaScript the
// form posts itself and the server redirects.
const form = document.getElementById("login");
const problem = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = form.elements.token.value.trim();
  const response = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  }).catch(() => null);
  if (response && response.ok) {
    location.replace(form.elements.next.value || "/");
    return;
  }
  const answer = response ? await response.json().catch(() => ({})) : {};
  problem.textContent = (answer.error && answer.error.message) || "the server did not answer";
  problem.hidden = false;
});
