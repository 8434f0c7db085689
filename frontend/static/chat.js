"use strict";
// A plain working chat: post the message, show the reply and the quota as text.
(() => {
  const form = document.getElementById("chat-form");
  const input = document.getElementById("message");
  const list = document.getElementById("messages");
  const quota = document.getElementById("quota");
  const status = document.getElementById("status");

  function add(text) {
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = input.value;
    add("You: " + message);
    try {
      const res = await fetch("/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ message }),
      });
      const body = await res.json();
      if (body.quota) quota.textContent = `${body.quota.remaining} of ${body.quota.limit} left`;
      if (res.ok) { add(`${body.served_by}: ${body.reply}`); input.value = ""; status.textContent = ""; }
      else status.textContent = body.detail || `Error ${res.status}`;
    } catch (err) {
      status.textContent = "Network error: " + err;
    }
  });
})();
